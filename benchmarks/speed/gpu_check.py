"""The GPU checks of the training step in one go, under one deadline, into one JSON file.

    python -m benchmarks.speed.gpu_check [--deadline-s 480] [--json gpu_check.json]      # on a CUDA machine
    python -m benchmarks.speed.gpu_check --device cpu --tiny --json out.json             # the same code, CI-sized

Sections, in this order (the most telling first, so a deadline cuts the least):
- sync:     every preset (and v3 with EMA) runs its warmup steps and three GAN steps, grad norms in the first and
            the last, each step under `torch.cuda.set_sync_debug_mode("error")` (amp off and bf16): any host
            synchronisation raises, and the check records where. Off CUDA the same steps run on the meta device
            (any read of a value raises).
- compare:  `benchmarks.speed.compare.compare_one` (engine vs reference step, per phase: images/s, ratio, FLOPs, MFU,
            GPU busy, host syncs) for v3 and ESRGAN at batch 16 and 64, amp off and bf16, compile off.
- packing:  four trials on one GPU, as `--gpus-per-worker 0.25` packs them (no Ray here: spawned processes): each
            process times the v3 GAN step for a fixed wall time, all starting together at a barrier, against one
            process alone; the ratio of the four's summed images/s to the one's.
- compiled: the compare rows again with `train.compile=default` (GAN phase only; compilation is slow).
Each section, and each compare row, is skipped (and recorded as skipped) when too little of `--deadline-s` is
left. The JSON is rewritten after every section, so a kill keeps what was measured. `goals` sets the numbers
against issue 16's: the H100 figures before (batch 16, G+D images/s: v3 607, ESRGAN 148; GPU busy 17-26 %) and the
targets (v3 >= 2x, ESRGAN >= 2.5x, GPU busy >= 80 %, four packed v3 trials >= 2.5x one).

Imports nothing beyond torch, numpy, PIL, safetensors and the project's srgan and benchmarks.speed.compare/measure (no
Ray, polars, plotly or pyiqa: the GPU machine has none of them). Exit codes: 0 every section ran or was skipped by
the deadline and no step synchronised; 1 a step synchronised or a section failed; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import queue
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from benchmarks.speed.compare import compare_one, format_row
from benchmarks.speed.measure import bench_config, describe_device, matmul_ceiling, sync
from srgan.config import ExperimentConfig, from_dict, override
from srgan.engine import GanEngine

SECTIONS = ("sync", "compare", "packing", "compiled")
PRESETS = ("v1", "v2", "v3", "ragan", "esrgan")
COMPARED = ("v3", "esrgan")
# Issue 16: measured on an H100 before the step stopped synchronising (batch 16, G+D images/s, engine).
BEFORE = {"v3": 607.0, "esrgan": 148.0, "gpu_busy": (0.17, 0.26)}
TARGETS = {"v3": 2.0, "esrgan": 2.5, "gpu_busy": 0.80, "packing": 2.5}


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


# -------------------------------------------------------------------------------------------------- sync


def run_steps(engine: GanEngine, device: torch.device) -> int:
    """Every warmup step, then three GAN steps; grad norms in the first and the last. Returns the steps run."""
    cfg = engine.cfg
    b, p, s = cfg.data.batch_size, cfg.data.patch_size, cfg.scale
    lq, gt = torch.rand(b, 3, p // s, p // s, device=device), torch.rand(b, 3, p, p, device=device)
    total = cfg.train.warmup_steps + 3
    for i in range(total):
        engine.train_step(lq, gt, grad_norms=i in (0, total - 1))
    return total


def _where(err: BaseException) -> str:
    """The innermost project frame of a traceback: file:line (function)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if f"{os.sep}srgan{os.sep}" in f.filename or f"{os.sep}benchmarks{os.sep}" in f.filename]
    f = frames[-1] if frames else traceback.extract_tb(err.__traceback__)[-1]
    return f"{Path(f.filename).name}:{f.lineno} ({f.name})"


def check_steps(cfg: ExperimentConfig, device: torch.device) -> dict[str, Any]:
    """The steps of `run_steps`, each under CUDA's sync debug mode "error" on CUDA, or on the meta device."""
    on_cuda = device.type == "cuda"
    run_on = device if on_cuda else torch.device("meta")
    engine = GanEngine(cfg, device=run_on)
    if on_cuda:
        torch.cuda.synchronize(device)
        torch.cuda.set_sync_debug_mode("error")
    try:
        steps = run_steps(engine, run_on)
    except RuntimeError as err:
        return {"ok": False, "step": engine.step, "error": str(err).strip().splitlines()[0][:300],
                "where": _where(err)}
    finally:
        if on_cuda:
            torch.cuda.set_sync_debug_mode("default")
    return {"ok": True, "steps": steps}


def sync_section(args: argparse.Namespace, device: torch.device, deadline: Deadline) -> dict[str, Any]:
    method = "cuda set_sync_debug_mode('error')" if device.type == "cuda" else "meta device"
    print(f"\n== sync: every step of every preset, {method} ==", flush=True)
    cases = [(name, {}) for name in PRESETS] + [("v3", {"optim.ema_decay": 0.999})]
    rows = []
    for name, extra in cases:
        for amp in args.amps:
            if deadline.left() < args.min_row_s:
                rows.append({"preset": name, "amp": amp, "skipped": "deadline"})
                continue
            cfg, untrained = bench_config(name, batch=None, tiny=args.tiny)
            cfg = override(cfg, {"train.warmup_steps": min(cfg.train.warmup_steps, 2), "optim.amp": amp, **extra})
            row = {"preset": cfg.name, "amp": amp, "ema": cfg.optim.ema_decay, "untrained_vgg": untrained,
                   **check_steps(cfg, device)}
            rows.append(row)
            verdict = "ok" if row["ok"] else f"SYNC at step {row['step']}: {row['error']} [{row['where']}]"
            print(f"{row['preset']:<14} amp {amp:<4} ema {row['ema']:<6} {verdict}", flush=True)
    checked = [r for r in rows if "ok" in r]
    return {"method": method, "rows": rows, "passed": all(r["ok"] for r in checked)}


# ----------------------------------------------------------------------------------------------- compare


def compare_section(args: argparse.Namespace, device: torch.device, deadline: Deadline, *, torch_compile: str,
                    phases: Sequence[str], ceiling: tuple[float, str]) -> dict[str, Any]:
    print(f"\n== compare: engine vs reference step, compile {torch_compile}, phases {', '.join(phases)} "
          f"({args.steps} steps timed, best of {args.repeats}) ==", flush=True)
    rows, skipped = [], []
    # cheapest first, so the deadline drops the big ones: batch, then amp, then preset
    for batch in args.batches:
        for amp in args.amps:
            for name in COMPARED:
                need = args.min_row_s * (4 if torch_compile != "off" else 1)
                if deadline.left() < need:
                    skipped.append({"preset": name, "batch": batch, "amp": amp, "skipped": "deadline"})
                    continue
                cfg, untrained = bench_config(name, batch=batch, tiny=args.tiny)
                for r in compare_one(cfg, amp=amp, torch_compile=torch_compile, device=device, steps=args.steps,
                                     warmup=args.warmup, repeats=args.repeats, ceiling=ceiling[0], phases=phases):
                    r["untrained_vgg"] = untrained
                    rows.append(r)
                    print(format_row(r), flush=True)
    return {"ceiling_flops": ceiling[0], "ceiling": ceiling[1], "rows": rows, "skipped": skipped}


# ----------------------------------------------------------------------------------------------- packing


def packing_worker(cfg_dict: dict, device: str, seconds: float, warmup: int, threads: int, barrier, results,
                   index: int) -> None:
    """One packed trial: `warmup` steps, the barrier, then GAN steps for `seconds` of wall time (collecting as
    a training loop does); puts its images/s on `results`."""
    try:
        torch.set_num_threads(threads)
        cfg = from_dict(ExperimentConfig, cfg_dict)
        dev = torch.device(device)
        engine = GanEngine(cfg, device=dev)
        b, p, s = cfg.data.batch_size, cfg.data.patch_size, cfg.scale
        lq, gt = torch.rand(b, 3, p // s, p // s, device=dev), torch.rand(b, 3, p, p, device=dev)
        for _ in range(warmup):
            engine.train_step(lq, gt)
        engine.pop_metrics()
        sync(dev)
        barrier.wait(timeout=600)
        start = time.perf_counter()
        steps = 0
        while time.perf_counter() - start < seconds:
            engine.train_step(lq, gt)
            steps += 1
            if engine.collects_after(engine.step):
                engine.pop_metrics()
        engine.pop_metrics()
        sync(dev)  # the queued steps are part of the window
        elapsed = time.perf_counter() - start
        results.put({"index": index, "steps": steps, "seconds": elapsed, "images_per_s": steps * b / elapsed})
    except Exception as err:  # noqa: BLE001 - reported to the parent, which records it
        results.put({"index": index, "error": f"{type(err).__name__}: {err}"})


def run_packed(cfg: ExperimentConfig, *, trials: int, device: torch.device, seconds: float, warmup: int,
               threads: int, timeout: float) -> list[dict]:
    """`trials` spawned processes stepping `cfg` at once; one result per process."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(trials), ctx.Queue()
    procs = [ctx.Process(target=packing_worker, args=(asdict(cfg), str(device), seconds, warmup, threads, barrier,
                                                      results, i), daemon=True) for i in range(trials)]
    for proc in procs:
        proc.start()
    out, end = [], time.monotonic() + timeout
    while len(out) < trials and time.monotonic() < end:
        try:
            out.append(results.get(timeout=1.0))
        except queue.Empty:
            if not any(p.is_alive() for p in procs):  # every process is gone: read what is left, then stop
                while True:
                    try:
                        out.append(results.get(timeout=0.1))
                    except queue.Empty:
                        break
                break
    for proc in procs:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.terminate()
    missing = sorted(set(range(trials)) - {r["index"] for r in out})
    out += [{"index": i, "error": "no result before the timeout"} for i in missing]
    return sorted(out, key=lambda r: r["index"])


def packing_section(args: argparse.Namespace, device: torch.device, deadline: Deadline) -> dict[str, Any]:
    trials = args.packing_trials
    print(f"\n== packing: {trials} v3 trials on one device vs one alone ({args.packing_seconds:g} s each) ==",
          flush=True)
    cfg, untrained = bench_config("v3", batch=None if not args.tiny else args.batches[0], tiny=args.tiny)
    big = 10**9
    cfg = override(cfg, {"train.warmup_steps": 0, "train.gan_steps": big, "train.val_every": big,
                         "train.ckpt_every": big})
    timeout = max(deadline.left() / 2, 1.0)
    alone = run_packed(cfg, trials=1, device=device, seconds=args.packing_seconds, warmup=args.warmup,
                       threads=args.packing_threads, timeout=timeout)
    packed = run_packed(cfg, trials=trials, device=device, seconds=args.packing_seconds, warmup=args.warmup,
                        threads=args.packing_threads, timeout=max(deadline.left(), 1.0))
    errors = [r["error"] for r in alone + packed if "error" in r]
    one = alone[0].get("images_per_s")
    total = sum(r.get("images_per_s", 0.0) for r in packed)
    ratio = total / one if one and not errors else None
    each = ", ".join(f"{r.get('images_per_s', math.nan):.1f}" for r in packed)
    print(f"alone {one or math.nan:.1f} images/s; {trials} packed {total:.1f} images/s in all ({each}); ratio "
          f"{ratio if ratio is not None else math.nan:.2f}" + (f"; errors: {errors}" if errors else ""), flush=True)
    return {"preset": cfg.name, "batch": cfg.data.batch_size, "amp": cfg.optim.amp, "untrained_vgg": untrained,
            "seconds": args.packing_seconds, "trials": trials, "alone": alone, "packed": packed,
            "alone_images_per_s": one, "packed_images_per_s": total, "ratio": ratio, "errors": errors}


# ------------------------------------------------------------------------------------------------- goals


def goals(report: dict[str, Any], *, device: torch.device) -> list[dict[str, Any]]:
    """Issue 16's targets against what ran: the fastest batch-16 G+D setting per preset (its GPU busy too)."""
    if device.type != "cuda":
        return [{"goal": "all", "note": "the baselines are H100 figures: goals are read on CUDA only"}]
    rows = [r for key in ("compare", "compiled") for r in report["sections"].get(key, {}).get("rows", [])]
    out = []
    for name in COMPARED:
        gan16 = [r for r in rows if r["preset"] == name and r["batch"] == 16 and r["phase"] == "gan"]
        best = max(gan16, key=lambda r: r["engine"], default=None)
        if best is None:
            out.append({"goal": f"{name} G+D images/s at batch 16", "note": "not measured"})
            continue
        setting = f"amp {best['amp']}, compile {best['compile']}"
        out.append({"goal": f"{name} G+D images/s at batch 16", "before": BEFORE[name], "now": best["engine"],
                    "setting": setting, "factor": best["engine"] / BEFORE[name], "target_factor": TARGETS[name],
                    "met": best["engine"] / BEFORE[name] >= TARGETS[name]})
        busy = best["gpu_busy_engine"]
        out.append({"goal": f"{name} GPU busy at batch 16 ({setting})", "before": list(BEFORE["gpu_busy"]),
                    "now": busy, "target": TARGETS["gpu_busy"],
                    "met": busy is not None and busy >= TARGETS["gpu_busy"]})
    ratio = report["sections"].get("packing", {}).get("ratio")
    out.append({"goal": "packed v3 trials / one trial, images/s", "now": ratio, "target": TARGETS["packing"],
                "met": ratio is not None and ratio >= TARGETS["packing"]})
    return out


# --------------------------------------------------------------------------------------------------- CLI


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Through a temporary file and a rename: a kill mid-write keeps the previous version."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed.gpu_check", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--tiny", action="store_true",
                   help="the presets' tiny variants, batch 2, one timed step, 1 s packing: the CPU test's size")
    p.add_argument("--deadline-s", type=float, default=480.0,
                   help="wall time for everything (default 480): sections and rows that do not fit are skipped")
    p.add_argument("--json", type=Path, default=Path("gpu_check.json"), help="the report (default gpu_check.json)")
    p.add_argument("--sections", default=None,
                   help=f"any of {','.join(SECTIONS)} (default: all on CUDA; without compiled elsewhere)")
    p.add_argument("--batches", default=None, help="compare batches (default 16,64; --tiny 2)")
    p.add_argument("--amp", default=None, help="autocast settings (default off,bf16 on CUDA, off elsewhere)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per block (default 20; --tiny 1)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; --tiny 1)")
    p.add_argument("--repeats", type=int, default=None, help="timed blocks per side, best taken (default 2; --tiny 1)")
    p.add_argument("--packing-trials", type=int, default=4, help="processes packed on the device (default 4)")
    p.add_argument("--packing-seconds", type=float, default=None,
                   help="wall time each packed trial steps for (default 20; --tiny 1)")
    p.add_argument("--packing-threads", type=int, default=1, help="torch threads per packed process (default 1)")
    p.add_argument("--min-row-s", type=float, default=None,
                   help="a row starts only with this much of the deadline left (default 20; --tiny 2; x4 compiled)")
    return p


def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, torch.device]:
    parser = build_parser()
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available here (use --device cpu --tiny for the CPU run)")
    if device.type not in ("cuda", "cpu"):
        parser.error(f"--device must be cuda or cpu, got {args.device!r}")
    on_cuda = device.type == "cuda"
    args.sections = _csv(args.sections) if args.sections else [s for s in SECTIONS if on_cuda or s != "compiled"]
    bad = [s for s in args.sections if s not in SECTIONS]
    try:
        args.batches = [int(b) for b in _csv(args.batches)] if args.batches else ([2] if args.tiny else [16, 64])
    except ValueError:
        parser.error(f"--batches expects integers, got {args.batches!r}")
    args.amps = _csv(args.amp) if args.amp else (["off", "bf16"] if on_cuda else ["off"])
    if bad or any(a not in ("off", "bf16") for a in args.amps) or not args.batches or min(args.batches) < 1:
        parser.error(f"sections must be among {', '.join(SECTIONS)} (got {bad}), --amp among off,bf16, "
                     "--batches positive integers")
    if args.deadline_s <= 0 or args.packing_trials < 1:
        parser.error("--deadline-s must be > 0 and --packing-trials >= 1")
    small = args.tiny
    args.steps = args.steps or (1 if small else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if small else 3)
    args.repeats = args.repeats or (1 if small else 2)
    args.packing_seconds = args.packing_seconds or (1.0 if small else 20.0)
    args.min_row_s = args.min_row_s if args.min_row_s is not None else (2.0 if small else 20.0)
    return args, device


def main(argv: Sequence[str] | None = None) -> int:
    args, device = parse(argv)
    deadline = Deadline(args.deadline_s)
    report: dict[str, Any] = {
        "device": describe_device(device), "torch": torch.__version__, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "deadline_s": args.deadline_s, "tiny": args.tiny, "argv": list(argv if argv is not None else sys.argv[1:]),
        "before": {"source": "issue 16: H100, batch 16, G+D images/s, before the step stopped synchronising",
                   **BEFORE},
        "targets": TARGETS, "sections": {},
    }
    print(report["device"], flush=True)
    ceiling: list[tuple[float, str]] = []

    def compare_ceiling() -> tuple[float, str]:
        if not ceiling:
            ceiling.append(matmul_ceiling(device))
        return ceiling[0]

    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "sync": lambda: sync_section(args, device, deadline),
        "compare": lambda: compare_section(args, device, deadline, torch_compile="off", phases=("warmup", "gan"),
                                           ceiling=compare_ceiling()),
        "packing": lambda: packing_section(args, device, deadline),
        "compiled": lambda: compare_section(args, device, deadline, torch_compile="default", phases=("gan",),
                                            ceiling=compare_ceiling()),
    }
    failed = False
    for name in SECTIONS:
        if name not in args.sections:
            report["sections"][name] = {"status": "skipped", "reason": "not requested"}
            continue
        if deadline.left() < args.min_row_s:
            report["sections"][name] = {"status": "skipped", "reason": "deadline"}
            print(f"\n== {name}: skipped (deadline) ==", flush=True)
            continue
        start = time.monotonic()
        try:
            result = sections[name]()
            status = "done"
        except Exception as err:  # noqa: BLE001 - one failed section must not lose the others' numbers
            result, status = {"error": f"{type(err).__name__}: {err}", "where": _where(err)}, "failed"
            print(f"{name} failed: {result['error']} [{result['where']}]", flush=True)
        failed |= status == "failed" or result.get("passed") is False or bool(result.get("errors"))
        report["sections"][name] = {"status": status, "seconds": time.monotonic() - start, **result}
        report["goals"] = goals(report, device=device)
        write_json(args.json, report)
    report["goals"] = goals(report, device=device)
    report["seconds"] = args.deadline_s - deadline.left()
    write_json(args.json, report)
    print("\n== goals ==")
    for g in report["goals"]:
        print(json.dumps(g, default=str))
    print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
