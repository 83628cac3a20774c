"""The options `harness.train`, `harness.sweep` and `harness.study` share, declared once: one name, one help, one
default, whichever command shows them."""

from __future__ import annotations

import argparse


def add_shared_arguments(p: argparse.ArgumentParser, *, packs: str) -> None:
    """--cpus-per-worker, --gpus-per-worker, --address, --data-root, --vgg-fallback and --dry-run. `packs`: what a
    fraction of a GPU packs on one GPU in this command ("workers" for a run, "trials" for a sweep)."""
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs per worker (default 1)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0,
                   help=f"GPUs per worker; a fraction (e.g. 0.25) packs several {packs} on one GPU")
    p.add_argument("--address", default=None, help="Ray cluster address (e.g. auto); default: local Ray")
    p.add_argument("--data-root", default=None, help="data folder (default: $ENHANCE_DATA or ../shared/data)")
    p.add_argument("--vgg-fallback", choices=("untrained",), default=None,
                   help="explicit opt-in: where the VGG19 ImageNet weights are missing, train perceptual losses on "
                        "untrained VGG19 features (every result and the report flagged untrained-perceptual-vgg19) "
                        "instead of stopping")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its cost estimate, start nothing")
