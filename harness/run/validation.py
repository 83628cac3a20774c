"""What a run validates on, how it is scored, and the rule that selection never reads a scored set.

Validation is what checkpoint choice (`--select best-val`), ASHA, the divergence stopper's reports and every
"best" read. Its images (`srgan.holdout`): by default a held-out split of the first training folder, or every image
of `data.val_dirs`, or, where a user names one, a benchmark set. It is scored with the papers' protocol on
centre crops of at most `data.val_crop` px (cheap enough to run several times per trial on a 2-core CPU): LR
made by the MATLAB-compatible bicubic (`srgan.resize.bicubic_downscale`, 8-bit), PSNR/SSIM on Y with the border
crop (`benchmarks.scoring.metrics`). A benchmark validation set is scored whole, with its own LR files.

A sweep or study whose run validates on a set it also scores (by name, by a file of the same bytes, or a
`val_dirs` folder holding a scored set's files) is refused before Ray starts, naming both (`check_selection`);
with `--allow-selection-on-test` it runs and every result carries the `selected-on-test` flag.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from harness.run.storage import resolve_train_dirs
from results.schema import SELECTED_ON_TEST  # the trials' flag
from srgan.config import ExperimentConfig
from srgan.holdout import ValidationSplit, sha256_of, validation_split

log = logging.getLogger(__name__)

OPT_IN = "--allow-selection-on-test"


class SelectionOnTest(ValueError):
    """A run whose validation would read a set the sweep scores; the message names both."""


@dataclass(frozen=True)
class ValPair:
    name: str
    gt: torch.Tensor  # (3, H, W) in [0, 1]
    lq: torch.Tensor  # (3, H/s, W/s), 8-bit grid


def is_benchmark(cfg: ExperimentConfig) -> bool:
    return cfg.data.val_set not in ("holdout", "dirs")


def split_of(cfg: ExperimentConfig, data_root: str | Path) -> ValidationSplit | None:
    """The run's held-out / val_dirs images (None for a benchmark validation set); raises naming the folder."""
    if is_benchmark(cfg):
        return None
    return validation_split(cfg, resolve_train_dirs(cfg, data_root), data_root)


def describe(cfg: ExperimentConfig, data_root: str | Path) -> str:
    """One line: what the run validates on."""
    d = cfg.data
    if is_benchmark(cfg):
        return f"benchmark set {d.val_set} (whole images)"
    split = split_of(cfg, data_root)
    where = ", ".join(str(_rel(f, data_root)) for f in split.folders)
    what = (f"{len(split.images)} image(s) held out of {where} (of {split.sources})" if split.kind == "holdout"
            else f"the {len(split.images)} image(s) of {where}")
    return f"{what}, centre crops of at most {d.val_crop} px"


def record(cfg: ExperimentConfig, data_root: str | Path) -> dict:
    """What config.json (and run.json) keep of the run's validation: the split's images with their sha256."""
    split = split_of(cfg, data_root)
    if split is None:
        return {"kind": "benchmark", "set": cfg.data.val_set}
    return {**split.record(data_root), "crop": cfg.data.val_crop}


def records(runs: Mapping[str, ExperimentConfig], data_root: str | Path) -> list[dict]:
    """The distinct validation records of a sweep's runs, each with the runs (labels) that use it."""
    out: dict[str, dict] = {}
    for label, cfg in runs.items():
        rec = record(cfg, data_root)
        entry = out.setdefault(json.dumps(rec, sort_keys=True), {**rec, "runs": []})
        if label not in entry["runs"]:
            entry["runs"].append(label)
    return list(out.values())


def _rel(path: Path, root: str | Path) -> Path:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return Path(path)


# ------------------------------------------------------------------------------------------ scoring


def centre_crop(img: torch.Tensor, side: int, scale: int) -> torch.Tensor:
    """The centre of `img` (3, H, W), at most `side` px each way, both sides a multiple of `scale`."""
    h, w = img.shape[-2:]
    ch, cw = min(side, h) // scale * scale, min(side, w) // scale * scale
    top, left = (h - ch) // 2, (w - cw) // 2
    return img[..., top : top + ch, left : left + cw]


def validation_pairs(cfg: ExperimentConfig, data_root: str | Path) -> list[ValPair]:
    """The (gt, lq) pairs validation scores, built once per process and validation setting."""
    d = cfg.data
    first = str(resolve_train_dirs(cfg, data_root)[0]) if d.val_set == "holdout" else ""
    return _pairs(d.val_set, tuple(d.val_dirs), d.val_count, d.val_crop, cfg.scale, first, str(data_root))


@lru_cache(maxsize=4)
def _pairs(val_set: str, val_dirs: tuple[str, ...], count: int, crop: int, scale: int, first: str,
           root: str) -> list[ValPair]:
    from srgan.images import load_image, quantize
    from srgan.resize import bicubic_downscale

    if val_set not in ("holdout", "dirs"):
        from benchmarks.scoring.datasets import load_pairs

        return [ValPair(p.name, p.gt, p.lq) for p in load_pairs(val_set, scale, root)]
    from srgan.holdout import dirs_split, holdout_split, resolve_dirs

    split = holdout_split(first, count=count) if val_set == "holdout" else dirs_split(resolve_dirs(val_dirs, root))
    pairs = []
    for held in split.images:
        gt = centre_crop(load_image(held.path), crop, scale)  # raises ImageError naming the file
        pairs.append(ValPair(held.path.name, gt, quantize(bicubic_downscale(gt, scale))))
    return pairs


def score(net: torch.nn.Module, pairs: Sequence[ValPair], *, scale: int, device: torch.device,
          niqe_params=None) -> dict[str, float]:
    """Mean PSNR/SSIM (Y, border crop `scale`) of `net` on `pairs`: {"val_psnr", "val_ssim"}; with `niqe_params`
    (`niqe_params_of`) also "val_niqe", the mean NIQE of the images whose crop holds NIQE's two 96-px blocks
    (`niqe_pairs`; none: no "val_niqe"). A Pareto search on NIQE sets crops that hold them
    (`harness.sweeps.pareto_search`)."""
    from benchmarks.scoring import metrics
    from benchmarks.scoring.evaluate import DEFAULT_TILE
    from srgan.upscale import upscale

    psnrs, ssims, niqes = [], [], []
    scorable = {p.name for p in niqe_pairs(pairs, scale)} if niqe_params is not None else set()
    for pair in pairs:
        sr = upscale(net, pair.lq[None].to(device), scale, tile=DEFAULT_TILE, name=f"validation image {pair.name}")
        gt = pair.gt[None].to(device)
        psnrs.append(float(metrics.psnr(sr, gt, crop=scale)[0]))
        ssims.append(float(metrics.ssim(sr, gt, crop=scale)[0]))
        if pair.name in scorable:
            niqes.append(float(metrics.niqe(sr, crop=scale, params=niqe_params)[0]))
    out = {"val_psnr": sum(psnrs) / len(psnrs), "val_ssim": sum(ssims) / len(ssims)}
    if niqes:
        out["val_niqe"] = sum(niqes) / len(niqes)
    return out


def niqe_pairs(pairs: Sequence[ValPair], scale: int) -> list[ValPair]:
    """The validation pairs NIQE can score (at least two whole 96-px blocks after the `scale`-px border crop)."""
    from benchmarks.scoring.metrics import niqe_problem

    return [p for p in pairs if niqe_problem(*p.gt.shape[-2:], crop=scale) is None]


@lru_cache(maxsize=4)
def niqe_params_of(data_root: str):
    """NIQE's parameters for validation (`benchmarks.scoring.metrics.load_niqe_params`), None where they are missing:
    then validation reports no NIQE (a Pareto search on NIQE checks they exist before Ray starts)."""
    from benchmarks.scoring.metrics import MetricUnavailable, load_niqe_params

    try:
        return load_niqe_params(data_root=data_root)
    except MetricUnavailable:
        return None


# ------------------------------------------------------------------------------- never on a scored set


@lru_cache(maxsize=16)
def _scored_files(name: str, scale: int, root: str) -> tuple[dict[str, Path], frozenset[Path]]:
    """{sha256: file} of the files a benchmark set is scored from, and their folders."""
    from benchmarks.scoring.datasets import load_pairs

    files = [f for p in load_pairs(name, scale, root) for f in (p.gt_path, p.lq_path) if f is not None]
    return {sha256_of(f): f for f in files}, frozenset(f.parent.resolve() for f in files)


def scored_overlap(cfg: ExperimentConfig, datasets: Sequence[str], data_root: str | Path) -> list[str]:
    """Why the run's validation reads a set in `datasets` (empty: it reads none of them)."""
    scored = {d.strip().lower() for d in datasets}
    if is_benchmark(cfg):
        name = cfg.data.val_set.strip().lower()
        return [f"data.val_set={cfg.data.val_set} is the scored set {name}"] if name in scored else []
    split = split_of(cfg, data_root)
    reasons = []
    for name in sorted(scored):
        digests, folders = _scored_files(name, cfg.scale, str(data_root))
        same = [h for h in split.images if h.sha256 in digests]
        if same:
            shown = ", ".join(f"{h.path.name} = {digests[h.sha256].name}" for h in same[:3])
            reasons.append(f"{len(same)} validation image(s) of {split.kind} are files of the scored set {name} "
                           f"({shown}{', ...' if len(same) > 3 else ''})")
        inside = [f for f in split.folders if Path(f).resolve() in folders]
        if inside and not same:
            reasons.append(f"data.val_dirs {', '.join(str(f) for f in inside)} holds the scored set {name}")
    return reasons


def check_selection(runs: Mapping[str, ExperimentConfig], datasets: Sequence[str], data_root: str | Path, *,
                    allow: bool) -> list[str]:
    """Refuse (`SelectionOnTest`, naming the run's validation and the scored set) any run that validates on a
    scored set, unless `allow` (the explicit opt-in): then the reasons are returned (and logged) and every result
    of those runs carries `SELECTED_ON_TEST`."""
    by_reason: dict[str, list[str]] = {}
    for label, cfg in runs.items():
        for reason in scored_overlap(cfg, datasets, data_root):
            by_reason.setdefault(reason, []).append(label)
    found = [f"{', '.join(labels)}: {reason}" for reason, labels in by_reason.items()]
    if found and not allow:
        raise SelectionOnTest(
            f"selection would read a scored set: {'; '.join(found)} (scored: {', '.join(datasets)}). Validate on "
            "the held-out split of the training folder (data.val_set=holdout, the default), on a folder "
            f"(data.val_set=dirs, data.val_dirs=...) or on a set that is not scored, or opt in with {OPT_IN} "
            f"(every result is then flagged {SELECTED_ON_TEST})")
    for line in found:
        log.warning("selection on a scored set (explicit %s; results flagged %s): %s", OPT_IN, SELECTED_ON_TEST, line)
    return found
