"""`python -m harness.study`: the study: every version with seeds, equal-budget controls and the adversarial weight's
ladder, with its report.
The command lives in `harness.sweeps.study`; this module is its stable entry point."""

import sys

from harness.sweeps.study import main

if __name__ == "__main__":
    sys.exit(main())
