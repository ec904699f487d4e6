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
sys.exit(main())
