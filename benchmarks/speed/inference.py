"""The generators' inference forward (`srgan.inference`, what scoring runs) against their plain forward (the
baseline), on the same images, the same weights and the same thread count, in one run:

    python -m benchmarks.speed.inference [--presets v2,esrgan] [--size cpu] [--datasets set5,set14] [--repeats 3]

Each preset's generator (its weights drawn by its own init) upscales every LR image of the sets; the two forwards
alternate image by image and each keeps its fastest of `--repeats` runs, so other processes on a shared machine
inflate neither side. Prints the seconds over all images (process CPU time), the speed-up, and the largest
difference between the two outputs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial

import torch

from benchmarks.scoring import datasets as ds
from srgan.generator import build_generator
from srgan.inference import inference_forward
from srgan.versions import preset, sized_name


def _fastest(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), torch.empty(0)
    for _ in range(repeats):
        start = time.process_time()
        out = fn()
        best = min(best, time.process_time() - start)
    return best, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed.inference", description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="v2,esrgan")
    p.add_argument("--size", default="cpu")
    p.add_argument("--datasets", default="set5,set14")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (scoring runs on one)")
    p.add_argument("--data-root", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = [pair.lq[None] for name in ds.parse_datasets(args.datasets)
              for pair in ds.load_pairs(name, args.scale, args.data_root)]
    pixels = sum(x.shape[-1] * x.shape[-2] for x in images) * args.scale**2
    print(f"{len(images)} images ({pixels / 1e6:.2f} M output pixels), {args.threads} thread(s), "
          f"fastest of {args.repeats}, process CPU time")
    for version in args.presets.split(","):
        cfg = preset(sized_name(version, args.size), scale=args.scale)
        net = build_generator(cfg.generator, scale=args.scale).eval()
        plain_s = fast_s = worst = 0.0
        with torch.inference_mode():
            fast = inference_forward(net)
            for x in images:
                t_plain, y_plain = _fastest(partial(net, x), args.repeats)
                t_fast, y_fast = _fastest(partial(fast, x), args.repeats)
                plain_s, fast_s = plain_s + t_plain, fast_s + t_fast
                worst = max(worst, float((y_plain - y_fast).abs().max()))
        print(f"{cfg.name:14s} {cfg.generator.arch:9s} plain {plain_s:.3f} s  inference {fast_s:.3f} s  "
              f"speed-up {plain_s / fast_s:.2f}x  largest |difference| {worst:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
