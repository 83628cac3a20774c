"""`python -m harness.train`: one training run with Ray Train (DDP over `--workers`), or in this process with `--local`.
The command lives in `harness.run.train`; this module is its stable entry point."""

import sys

from harness.run.train import main

if __name__ == "__main__":
    sys.exit(main())
