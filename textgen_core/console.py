"""The ``textgen`` command: exactly ``python -m textgen_core`` (the same early setup, then the CLI)."""
from __future__ import annotations

import runpy


def main() -> None:
    runpy.run_module("textgen_core", run_name="__main__", alter_sys=True)   # exits with the CLI's status
