"""NIQE's cost per image: `benchmarks.scoring.metrics.niqe` against pyiqa's own `calculate_niqe` (the baseline), on the
same images, the same parameters and the same thread count, in one run:

    python -m benchmarks.speed.niqe_speed [--datasets set5,set14] [--repeats 3] [--threads 1]

Each image is the bicubic x4 SR of a benchmark image (what a sweep scores). The two are timed alternately,
image by image, and each keeps its fastest of `--repeats` runs, so other processes on a shared machine
inflate neither side. Prints seconds per image, the speed-up, and the largest difference between the values.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.scoring import datasets as ds
from benchmarks.scoring import metrics as M
from srgan.resize import imresize


def _fastest(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[float, float]:
    best, value = float("inf"), float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        value = float(fn())
        best = min(best, time.perf_counter() - start)
    return best, value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed.niqe_speed", description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="set5,set14")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads for pyiqa's (ours runs on one, as scoring does)")
    p.add_argument("--data-root", type=Path, default=None)
    args = p.parse_args(argv)
    from pyiqa.archs.niqe_arch import calculate_niqe

    torch.set_num_threads(args.threads)
    params = M.load_niqe_params(data_root=args.data_root)
    crop = args.scale
    images = [(f"{name}/{pair.name}", imresize(pair.lq[None], scale=args.scale).clamp(0, 1))
              for name in ds.parse_datasets(args.datasets) for pair in ds.load_pairs(name, args.scale, args.data_root)]
    # pyiqa gets the image exactly as ours sees it: 8-bit, float64 in [0, 1], BT.601 Y (PIRM's protocol)
    theirs_total = ours_total = worst = 0.0
    for label, sr in images:
        x = M.to_u8_scale(sr) / M.PEAK
        t_theirs, v_theirs = _fastest(lambda x=x: calculate_niqe(x, crop, True, "ycbcr", params.mu, params.cov),
                                      args.repeats)
        t_ours, v_ours = _fastest(lambda sr=sr: M.niqe(sr, crop=crop, params=params), args.repeats)
        theirs_total, ours_total = theirs_total + t_theirs, ours_total + t_ours
        worst = max(worst, abs(v_theirs - v_ours))
        print(f"{label:22s} {tuple(sr.shape[-2:])!s:12s} NIQE {v_ours:8.4f}  pyiqa {t_theirs:.3f} s  "
              f"ours {t_ours:.3f} s")
    n = len(images)
    print(f"\n{n} images, {args.threads} thread(s), fastest of {args.repeats}: pyiqa {theirs_total / n:.3f} s/image, "
          f"ours {ours_total / n:.3f} s/image, speed-up {theirs_total / ours_total:.2f}x; "
          f"largest |difference| {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
