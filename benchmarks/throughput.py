"""`python -m benchmarks.throughput`: the engine's training step against a plain reference step, images/s and their
ratio in one run (`--compare`), the check the project's hooks name for any change to the step or the loader.
The command lives in `benchmarks.speed.throughput`; this module is its stable entry point."""

import sys

from benchmarks.speed.throughput import main

if __name__ == "__main__":
    sys.exit(main())
