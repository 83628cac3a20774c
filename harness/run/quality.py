"""Quality benchmark: train a CPU preset for a fixed wall time with `python -m harness.train`, then score it and
the bicubic baseline on Set5 in the same run and print the gain.

    python -m harness.run.quality [--minutes 15] [--scale 4] [--set key=value ...]

The default preset is the PSNR-oriented stage of v2 (pixel-loss warmup only, no GAN phase) made CPU-sized:
SRResNet with 8 BN-free residual blocks of 32 features, a bicubic skip, L1, Adam at 5e-4 halved at steps 1300
and 1600, batches of 16 64-px patches of T91 + BSD200 (smaller patches buy more steps in the time budget).
The issue's floor is bicubic + 2.0 dB (28.42 -> 30.4 on Set5 x4).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

CPU_PRESET = {
    "generator.skip": "bicubic",
    "generator.norm": "none",
    "generator.num_blocks": "8",
    "generator.num_features": "32",
    "data.patch_size": "64",
    "data.batch_size": "16",
    "optim.lr_g": "5e-4",
    "optim.milestones": "1300,1600",
    "optim.gamma": "0.5",
    "train.warmup_steps": "1000000",  # the time limit ends training
    "train.gan_steps": "0",
    "train.val_every": "500",
    "train.ckpt_every": "500",
    "train.log_every": "100",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.run.quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--storage", default=None)
    p.add_argument("--data-root", default=None)
    args = p.parse_args(argv)

    from benchmarks.scoring import evaluate
    from harness.run.storage import default_storage
    from srgan.checkpoint import load_generator

    storage = Path(args.storage) if args.storage else default_storage("quality")
    name = f"quality-x{args.scale}-{time.strftime('%Y%m%d-%H%M%S')}"
    sets = {**CPU_PRESET, "train.time_limit_s": str(args.minutes * 60)}
    sets.update(dict(kv.split("=", 1) for kv in args.overrides))
    cmd = [sys.executable, "-m", "harness.train", "--preset", "v2", "--scale", str(args.scale), "--storage",
           str(storage), "--name", name] + [f"--set={k}={v}" for k, v in sets.items()]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    print(" ".join(cmd), flush=True)
    started = time.time()
    if subprocess.run(cmd).returncode != 0:
        return 1
    train_s = time.time() - started
    run_dir = storage / name
    ckpt = sorted(p for p in run_dir.glob("checkpoint_*") if p.is_dir())[-1]  # the last (time-limit) one
    net_g, cfg = load_generator(ckpt)
    model = evaluate.evaluate_model(net_g, ["set5"], args.scale, data_root=args.data_root, metrics=("psnr", "ssim"))
    bicubic = evaluate.evaluate_model(evaluate.baseline("bicubic", args.scale), ["set5"], args.scale,
                                      data_root=args.data_root, metrics=("psnr", "ssim"))
    m_psnr, b_psnr = float(model["psnr"].mean()), float(bicubic["psnr"].mean())
    print(f"trained {train_s / 60:.1f} min (wall, incl. Ray start-up), checkpoint {ckpt}")
    print(f"Set5 x{args.scale}: model {m_psnr:.2f} dB / {float(model['ssim'].mean()):.4f}, "
          f"bicubic {b_psnr:.2f} dB / {float(bicubic['ssim'].mean()):.4f}, gain {m_psnr - b_psnr:+.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
