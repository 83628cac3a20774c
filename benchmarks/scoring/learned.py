"""Learned full-reference metrics through pyiqa: LPIPS (AlexNet v0.1, Zhang et al. 2018) with its weights from the
standard caches, and any other pyiqa full-reference metric by its pyiqa name.

    learned_score(sr, gt, *, net=load_learned("lpips", device=...))  -> (B,) float64

A metric whose weights are neither cached nor downloadable raises `MetricUnavailable` (`benchmarks.scoring.weights`)
naming what is missing; the failure is remembered per process, so a sweep of many trials tries the network once.
"""

from __future__ import annotations

import importlib.util
import re
import urllib.error
from pathlib import Path

import torch
from torch import nn

from benchmarks.scoring.psnr_ssim import PEAK, to_u8_scale
from benchmarks.scoring.weights import ALEXNET, LPIPS_HEADS, MetricUnavailable, ensure


def _lpips_pip_heads() -> Path | None:
    """The heads that ship inside the `lpips` wheel, if that package is installed."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "weights" / "v0.1" / "alex.pth"
    return path if path.is_file() else None


# Failed loads are remembered per process, so a sweep of many trials tries the network once, not per trial.
_UNAVAILABLE: dict[str, str] = {}


def load_lpips(*, device: str | torch.device = "cpu", download: bool = True) -> nn.Module:
    """pyiqa's LPIPS (AlexNet, v0.1) with weights from the standard caches; raises `MetricUnavailable`.

    The heads are loaded here with `weights_only=True` (pyiqa itself unpickles them with weights_only=False)."""
    if "lpips" in _UNAVAILABLE:
        raise MetricUnavailable(_UNAVAILABLE["lpips"])
    import pyiqa

    try:
        heads = _lpips_pip_heads() or ensure(LPIPS_HEADS, download=download)
        ensure(ALEXNET, download=download)  # torchvision then loads it from the cache without the network
    except MetricUnavailable as err:
        _UNAVAILABLE["lpips"] = str(err)
        raise
    metric = pyiqa.create_metric("lpips", device=torch.device(device), pretrained=False)
    state = torch.load(heads, map_location="cpu", weights_only=True)
    # pyiqa's file and the lpips wheel name the heads lin0..lin4 (pyiqa's module also lists them as lins.N)
    state = {re.sub(r"^lins\.(\d)\.", r"lin\1.", k.removeprefix("module.")): v for k, v in state.items()}
    wanted = [k for k in metric.net.state_dict() if re.match(r"^lin\d\.", k)]
    absent = [k for k in wanted if k not in state]
    if absent:
        raise MetricUnavailable(f"{heads}: not LPIPS AlexNet heads (missing {', '.join(absent)})")
    metric.net.load_state_dict({k: state[k] for k in wanted}, strict=False)
    return metric.eval()


def load_pyiqa_metric(name: str, *, device: str | torch.device = "cpu") -> nn.Module:
    """Any other pyiqa full-reference metric by its pyiqa name; raises `MetricUnavailable` without weights."""
    if name in _UNAVAILABLE:
        raise MetricUnavailable(_UNAVAILABLE[name])
    import pyiqa

    if name not in pyiqa.list_models(metric_mode="FR"):
        raise ValueError(f"unknown full-reference metric {name!r}; pyiqa knows: {', '.join(pyiqa.list_models('FR'))}")
    try:
        return pyiqa.create_metric(name, device=torch.device(device)).eval()
    except (urllib.error.URLError, OSError, ValueError, RuntimeError) as err:
        _UNAVAILABLE[name] = (f"pyiqa {name} weights unavailable ({type(err).__name__}: {err}); create the metric "
                              f"once on a machine with internet (pyiqa caches it under TORCH_HOME/hub/pyiqa), copy "
                              f"that TORCH_HOME over and set TORCH_HOME")
        raise MetricUnavailable(_UNAVAILABLE[name]) from None


def learned_score(sr: torch.Tensor, gt: torch.Tensor, *, net: nn.Module) -> torch.Tensor:
    """A learned metric's score per image (LPIPS, or any pyiqa FR metric) on 8-bit-quantised (B, 3, H, W)
    images in [0, 1], as float64. The network takes [0, 1] inputs: pyiqa's LPIPS rescales to [-1, 1] itself."""
    with torch.no_grad():
        score = net(to_u8_scale(sr).float() / PEAK, to_u8_scale(gt).float() / PEAK)
    return score.reshape(-1).to(torch.float64)


def load_learned(name: str, *, device: str | torch.device = "cpu") -> nn.Module:
    """The network of a learned metric: LPIPS from the standard caches, else pyiqa's metric of that name."""
    return load_lpips(device=device) if name == "lpips" else load_pyiqa_metric(name, device=device)


def describe_lpips_weights() -> str:
    """Where LPIPS weights were read from (for `protocol(lpips_weights=...)`)."""
    heads = _lpips_pip_heads() or LPIPS_HEADS.cache_path()
    return f"backbone {ALEXNET.cache_path()}, heads {heads}"

