"""The bundled pretrained models offline: time to load each by name (Hub switched off, so the
fallback to pretrained/ is part of it), and the time to its first 200 sampled tokens; and the load
time when the Hub accepts connections but never answers (HF_ENDPOINT at a local socket that is
never read: the fallback waits for the download's timeout).

Each model loads in a fresh subprocess: "import" is `import textgen_core` (torch included), "first
load" the first load by name after it (the Hub attempt, modules imported lazily, reading the folder),
"warm" a second load in the same process.

    .venv/bin/python benchmarks/bench_pretrained.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys

from common import ROOT, describe, emit, machine, table

WORKER = """
import json, sys, time
t0 = time.perf_counter()
from textgen_core import api, pretrained
t1 = time.perf_counter()
entry = pretrained.find(sys.argv[1])
bundle, note = pretrained.load_pretrained(entry)
t2 = time.perf_counter()
pretrained.load_pretrained(entry)
t3 = time.perf_counter()
text = api.generate(bundle, "", length=200, temperature=0.8, seed=1)[0]
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_load_s": t2 - t1, "warm_load_s": t3 - t2, "sample_200_s": t4 - t3,
                  "note": note, "params": bundle.model.num_parameters(), "kind": bundle.tokenizer.kind}))
"""


def silent_endpoint() -> tuple[socket.socket, str]:
    """A listening socket that never accepts: connections open (the backlog), requests get no answer."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


def run_worker(name: str, **env_overrides: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_ENDPOINT")}
    env.update(OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=str(ROOT), HF_HOME="/tmp/textgen_bench_hf", **env_overrides)
    out = subprocess.run([sys.executable, "-c", WORKER, name], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(name: str) -> dict:
    offline = run_worker(name, HF_HUB_OFFLINE="1")
    sock, endpoint = silent_endpoint()
    try:
        silent = run_worker(name, HF_ENDPOINT=endpoint)
    finally:
        sock.close()
    return {"name": name, **offline, "silent_hub_first_load_s": silent["first_load_s"],
            "silent_hub_note": silent["note"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the first model only")
    parser.add_argument("--cpu-only", action="store_true", help="accepted for symmetry: this one is CPU only")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from textgen_core import pretrained

    info = machine()
    print(describe(info))
    names = [e.name for e in pretrained.catalog()]
    if not names:
        print(f"no pretrained models in {pretrained.pretrained_dir()}")
    rows = [measure(name) for name in (names[:1] if args.quick else names)]
    print(table(["model", "tokenizer", "parameters", "import s", "first load s, offline", "warm load s",
                 "200 tokens s", "first load s, Hub silent"],
                [(r["name"], r["kind"], f"{r['params']:,}", f"{r['import_s']:.2f}", f"{r['first_load_s']:.2f}",
                  f"{r['warm_load_s']:.3f}", f"{r['sample_200_s']:.2f}", f"{r['silent_hub_first_load_s']:.2f}")
                 for r in rows]))
    if rows:
        print(f"offline: {rows[0]['note']}\nHub silent: {rows[0]['silent_hub_note']}")
    emit("pretrained", {"machine": info, "quick": args.quick, "rows": rows})


if __name__ == "__main__":
    main()
