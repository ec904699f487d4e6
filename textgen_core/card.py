"""The model card (README.md with Hub metadata) written into every model folder.

The metadata is huggingface_hub's ``ModelCardData``: license, language, datasets, library name,
tags and a model-index with the validation bits per character and nats per token on the split
that was held out ("last 10% of <corpus>"). ``ModelCard.load`` reads every field back.

Language: ``info["language"]`` when the run names one (a code such as "en", or a list of them),
else ``render_card(..., language=...)``; without either, "en" only for the bundled English
corpora (``ENGLISH_CORPORA``), and no language at all for any other text, which could be in any.
"""
from __future__ import annotations

import platform
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch

if TYPE_CHECKING:
    from huggingface_hub import ModelCard, ModelCardData

LICENSE = "mit"                       # the project's LICENSE; a card's model is the project's output
LIBRARY_NAME = "textgen_core"
PIP_NAME = "textgen-core"             # the distribution in pyproject.toml
INSTALL_COMMAND = f"pip install {PIP_NAME}"
LOCAL_SOURCE = "path/to/this/folder"  # what the usage loads until the card names its Hub repo
ENGLISH_CORPORA = ("tinyshakespeare.txt", "alice.txt", "lyrics_public_domain.txt")
KNOWN_DATASETS = {"tinyshakespeare.txt": "tiny_shakespeare"}   # corpus file -> Hub dataset id
_SOURCE_IN_USAGE = re.compile(r'(tg\.load\(|textgen sample )"[^"\n]*"')


def hardware_name(device: torch.device, threads: Optional[int] = None) -> str:
    """The GPU's name, or the CPU with the threads the run trained on (``threads``; None: torch's
    setting now, which is not the run's when it set its own count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = threads or torch.get_num_threads()
    return f"CPU ({platform.machine()}, {threads} thread{'s' if threads != 1 else ''})"


def _fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def corpus_name(info: dict) -> str:
    corpus = info.get("corpus")
    name = corpus.get("name") if isinstance(corpus, dict) else None
    return name if isinstance(name, str) and name else "the training text"


def language_of(info: dict, language: Optional[str | list[str]] = None) -> Optional[str | list[str]]:
    """The card's language: the given one, the run's, else "en" for a bundled English corpus."""
    chosen = language or info.get("language")
    if chosen:
        return chosen
    return "en" if corpus_name(info) in ENGLISH_CORPORA else None


def split_name(info: dict) -> str:
    fraction = info.get("val_fraction")
    share = f"{fraction:.0%}" if isinstance(fraction, (int, float)) else "10%"
    return f"last {share} of {corpus_name(info)}"


def _eval_results(info: dict) -> list:
    """The model-index entries: validation bits per character and nats per token, when known."""
    from huggingface_hub import EvalResult

    corpus = corpus_name(info)
    dataset_type = KNOWN_DATASETS.get(corpus, Path(corpus).stem.replace(" ", "_") or "text")
    metrics = [("bpc", "validation bits per character", info.get("best_val_bpc")),
               ("nats_per_token", "validation loss (nats per token)", info.get("best_val_loss"))]
    return [EvalResult(task_type="text-generation", task_name="Text generation", dataset_type=dataset_type,
                       dataset_name=corpus, dataset_split=split_name(info), metric_type=kind,
                       metric_name=label, metric_value=round(float(value), 4))
            for kind, label, value in metrics if isinstance(value, (int, float))]


def _tags(info: dict) -> list[str]:
    model, tokenizer = info.get("model") or {}, info.get("tokenizer") or {}
    tags = ["text-generation", "textgen-core", "pytorch", "safetensors"]
    if model.get("arch"):
        tags.append(str(model["arch"]))
    if tokenizer.get("type"):
        tags.append("sentencepiece" if tokenizer["type"] == "sentencepiece" else f"{tokenizer['type']}-level")
    return tags


def card_data(info: dict, language: Optional[str | list[str]] = None) -> "ModelCardData":
    """The card's YAML metadata as huggingface_hub's ModelCardData."""
    from huggingface_hub import ModelCardData

    results = _eval_results(info)
    dataset = KNOWN_DATASETS.get(corpus_name(info))
    return ModelCardData(language=language_of(info, language), license=LICENSE, library_name=LIBRARY_NAME,
                         pipeline_tag="text-generation", tags=_tags(info), datasets=[dataset] if dataset else None,
                         model_name=str(info.get("name") or "model"), eval_results=results or None)


def _summary(info: dict) -> str:
    model, tokenizer, corpus = info.get("model") or {}, info.get("tokenizer") or {}, info.get("corpus") or {}
    arch = str(model.get("arch", "language")).upper()
    article = "An" if arch[:1] in "AEFHILMNORSX" else "A"   # an LSTM, a GRU
    chars = f" ({corpus['chars']:,} characters)" if isinstance(corpus.get("chars"), int) else ""
    vocab = f" ({tokenizer['vocab_size']:,} tokens)" if isinstance(tokenizer.get("vocab_size"), int) else ""
    kind = tokenizer.get("type", "its own")
    return (f"{article} {arch} language model trained with `textgen_core` on **{corpus_name(info)}**{chars},\n"
            f"{kind} tokenizer{vocab}.")


def _table(info: dict) -> str:
    """The facts of the run that run.json holds, one row each (rows without a value are left out)."""
    model, train = info.get("model") or {}, info.get("train_config") or {}
    rows: list[tuple[str, Optional[str]]] = []
    if model:
        rows.append(("architecture", f"{model.get('arch')}: embedding {model.get('embedding')}, hidden "
                                     f"{model.get('hidden')}, layers {model.get('layers')}, "
                                     f"dropout {model.get('dropout')}"))
    if isinstance(info.get("parameters"), int):
        rows.append(("parameters", f"{info['parameters']:,}"))
    if train and "steps" in info:
        precision = info.get("precision", train.get("precision", "fp32"))
        rows.append(("training", f"{info['steps']} steps, batch {train.get('batch_size')} x {train.get('seq_len')} "
                                 f"tokens, lr {_fmt(train.get('lr'), 'g')}, {precision}"))
    rows.append(("stopped because", info.get("stop_message")))
    if "best_val_loss" in info:
        rows.append(("best validation loss", f"{_fmt(info.get('best_val_loss'), '.4f')} nats/token at step "
                                             f"{info.get('best_step', 'n/a')}"))
        rows.append(("best validation bits per char", _fmt(info.get("best_val_bpc"), ".4f")))
        rows.append(("validation split", split_name(info).replace(corpus_name(info), "the text")))
    rows.append(("hardware", info.get("hardware")))
    if isinstance(info.get("elapsed_s"), (int, float)):
        rows.append(("training time", f"{info['elapsed_s']:.1f} s"))
    lines = [f"| {label} | {value} |" for label, value in rows if value is not None]
    return "\n".join(["| | |", "|---|---|", *lines]) if lines else ""


def _usage(source: str) -> str:
    return f"""## Use

```bash
{INSTALL_COMMAND}
```

```python
import textgen_core as tg

bundle = tg.load("{source}")
print(tg.generate(bundle, prompt="", length=200, temperature=0.8, seed=1)[0])
```

or on the command line: `textgen sample "{source}" --length 200 --seed 1`."""


def _body(info: dict, samples: list[str], source: str) -> str:
    sample_text = "\n\n".join(f"```text\n{s}\n```" for s in samples) or "_none_"
    command = f"```bash\n{info['command']}\n```\n\n" if info.get("command") else ""
    return f"""
# {info.get('name') or 'model'}

{_summary(info)}

{_table(info)}

{command}{_usage(source)}

## Samples (temperature 0.8)

{sample_text}
"""


def model_card(info: dict, samples: list[str], *, repo_id: Optional[str] = None,
               language: Optional[str | list[str]] = None) -> "ModelCard":
    """The card as huggingface_hub's ModelCard; ``repo_id`` is what its usage loads (else the folder)."""
    from huggingface_hub import ModelCard

    data = card_data(info, language)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{_body(info, samples, repo_id or LOCAL_SOURCE)}")


def render_card(info: dict, samples: list[str], *, repo_id: Optional[str] = None,
                language: Optional[str | list[str]] = None) -> str:
    """Markdown with YAML front matter; ``info`` is the run.json dict (fields it lacks are left out)."""
    return str(model_card(info, samples, repo_id=repo_id, language=language))


def for_repo(card: str, repo_id: str) -> str:
    """``card`` with its usage loading ``repo_id``: the card a folder gets when it is pushed there."""
    return _SOURCE_IN_USAGE.sub(lambda match: f'{match.group(1)}"{repo_id}"', card)


def card_samples_of(card: str) -> list[str]:
    """The samples of a card this module wrote (its ```text blocks)."""
    return re.findall(r"```text\n(.*?)\n```", card, flags=re.S)
