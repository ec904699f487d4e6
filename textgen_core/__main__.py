import os
import signal
import sys

# OpenMP threads that spin while waiting make training crawl whenever anything else uses the
# cores (a browser, a second run). Passive waiting must be chosen before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _interrupted_while_loading(signum, frame) -> None:
    # While torch loads, a KeyboardInterrupt can be swallowed by a library's bare `except:` and leave
    # a half-imported module behind (seen: numpy, which then broke the first checkpoint much later).
    # Nothing has been written yet: leave at once.
    print("error: interrupted", file=sys.stderr, flush=True)
    os._exit(130)


signal.signal(signal.SIGINT, _interrupted_while_loading)
from .cli import main  # noqa: E402  (a second or two: torch, safetensors, huggingface_hub)

signal.signal(signal.SIGINT, signal.default_int_handler)
code = main()
# The command is over, its files are written and its exit status is decided. A late signal (the
# second of a quick double Ctrl-C) must not change it: shutting torch down takes a few hundred ms,
# and in its last part Python has put the default handlers back, which would end the process "killed
# by SIGINT" instead of with `code`. Ignored signals stay ignored through that part.
from .runs import INTERRUPT_SIGNALS  # noqa: E402  (already loaded by the CLI)

for interrupt in INTERRUPT_SIGNALS:
    signal.signal(interrupt, signal.SIG_IGN)
from .distributed import launched_world_size  # noqa: E402

if launched_world_size() > 1:
    # A torchrun rank: its process group is closed, and leaving through the interpreter's shutdown
    # has aborted a rank in C++ ("terminate called without an active exception") while destroying
    # the group's threads. Leave at once instead, with the output flushed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
