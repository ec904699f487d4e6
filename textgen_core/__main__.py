import os
import sys

# OpenMP threads that spin while waiting make training crawl whenever anything else uses the
# cores (a browser, a second run). Passive waiting must be chosen before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .cli import main  # noqa: E402

sys.exit(main())
