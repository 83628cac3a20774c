"""`python -m benchmarks.prefetch --cache DIR`: every pretrained weight file the project can use, fetched into one
cache folder laid out as TORCH_HOME expects, for clusters whose compute nodes have no internet.
The command lives in `benchmarks.scoring.weights`; this module is its stable entry point."""

import sys

from benchmarks.scoring.weights import main

if __name__ == "__main__":
    sys.exit(main())
