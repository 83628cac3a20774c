"""`python -m harness.sweep`: a Ray Tune sweep of versions and loss weights, scored with the papers' protocol, with
its report.
The command lives in `harness.sweeps.sweep`; this module is its stable entry point."""

import sys

from harness.sweeps.sweep import main

if __name__ == "__main__":
    sys.exit(main())
