"""Write the model card (README.md) of model folders again from their run.json, with the card code
of this version; the samples are those of the folder's card (or new ones with --resample).

Usage: python scripts/make_cards.py [--resample] [FOLDER...]
  no FOLDER: every bundled model, each card's usage naming its catalog repo id
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textgen_core import card, hub, pretrained  # noqa: E402
from textgen_core.checkpoint import atomic_write_text  # noqa: E402


def catalog_repo_ids() -> dict[Path, str]:
    """Bundled folder -> the repo id its catalog entry gives (not TEXTGEN_HUB_OWNER's)."""
    directory = pretrained.PRETRAINED_DIR
    entries = json.loads((directory / pretrained.CATALOG_FILE).read_text(encoding="utf-8"))
    return {(directory / e["folder"]).resolve(): e["repo_id"] for e in entries}


def samples_for(folder: Path, resample: bool) -> list[str]:
    if not resample:
        return card.card_samples_of(hub.read_card(folder) or "")
    from textgen_core.runs import card_samples

    bundle = hub.load_folder(folder)
    return card_samples(bundle.model, bundle.tokenizer, bundle.info.get("chars_per_token") or 1.0)


def write_card(folder: Path, repo_id: Optional[str], resample: bool) -> None:
    info = json.loads((folder / hub.RUN_FILE).read_text(encoding="utf-8"))
    text = card.render_card(info, samples_for(folder, resample), repo_id=repo_id)
    atomic_write_text(folder / hub.CARD_FILE, text)
    print(f"{folder}: card written" + (f" for {repo_id}" if repo_id else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path)
    parser.add_argument("--resample", action="store_true", help="draw new samples (seed 1, temperature 0.8)")
    args = parser.parse_args()
    repo_ids = catalog_repo_ids()
    for folder in args.folders or sorted(repo_ids):
        write_card(folder, repo_ids.get(folder.resolve()), args.resample)
    return 0


if __name__ == "__main__":
    sys.exit(main())
