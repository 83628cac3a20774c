"""`python -m benchmarks.evaluate`: score an upscaler, or SR images made elsewhere, on the benchmark sets with the
papers' protocol, and write a results folder.
The command lives in `benchmarks.scoring.cli`; this module is its stable entry point."""

import sys

from benchmarks.scoring.cli import main

if __name__ == "__main__":
    sys.exit(main())
