"""Published ESRGAN generator weights (.pth files) mapped onto the project's `RRDBNet`.

Two layouts are read, both x4 (two nearest-x2 + conv stages), with every key and shape mapped explicitly:

- the official ESRGAN release (xinntao/ESRGAN: `RRDB_ESRGAN_x4.pth`, `RRDB_PSNR_x4.pth`): a flat state dict of
  `conv_first`, `RRDB_trunk.N.RDBk.convj` (k = 1..3, j = 1..5), `trunk_conv`, `upconv1`, `upconv2`, `HRconv`,
  `conv_last` (each `.weight` and `.bias`);
- BasicSR's (XPixelGroup/BasicSR `RRDBNet`): `{"params": ..., "params_ema": ...}` (the EMA weights are taken
  when present, as BasicSR's inference does) wrapping `conv_first`, `body.N.rdbk.convj`, `conv_body`,
  `conv_up1`, `conv_up2`, `conv_hr`, `conv_last`. A bare (unwrapped) BasicSR state dict is read too.

Files are read with `torch.load(weights_only=True)`: a pickle that would run code is refused. A missing key, a
stray key or a wrong shape is a `CheckpointError` that names it. The number of blocks, features and growth
channels are read from the shapes, and nothing is built from them before they are checked: every tensor must be
backed by bytes the file stores (not an `expand`-ed view declaring more), all of them must fit in the file, and
the network they imply must pass `srgan.config.check_values`' size bounds.
BasicSR's x2/x1 variants (pixel-unshuffled input, 12 or 48 input channels) compute a different function than
this project's x2 RRDBNet and are refused with that reason.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from srgan.config import ExperimentConfig, GeneratorConfig, check_values
from srgan.files import CheckpointError, torch_load_problem
from srgan.generator import build_generator
from srgan.versions import esrgan

log = logging.getLogger(__name__)

LAYOUT_ESRGAN = "esrgan"  # xinntao/ESRGAN's release files
LAYOUT_BASICSR = "basicsr"  # XPixelGroup/BasicSR's RRDBNet
OFFICIAL_SCALE = 4

# Module names of each layout: the dense-block convs (n = RRDB index from 0, k = dense block 1..3, j = conv 1..5),
# the conv after the trunk, the two upsampling convs and the conv before conv_last.
_LAYOUTS: dict[str, dict[str, str | tuple[str, str]]] = {
    LAYOUT_ESRGAN: {"dense": "RRDB_trunk.{n}.RDB{k}.conv{j}", "trunk": "trunk_conv", "up": ("upconv1", "upconv2"),
                    "hr": "HRconv"},
    LAYOUT_BASICSR: {"dense": "body.{n}.rdb{k}.conv{j}", "trunk": "conv_body", "up": ("conv_up1", "conv_up2"),
                     "hr": "conv_hr"},
}
_WRAPPER_KEYS = ("params_ema", "params")  # BasicSR's saved networks; the first present is used


def module_map(layout: str, num_blocks: int) -> dict[str, str]:
    """{module name in the published layout: module name in the project's RRDBNet} for every conv."""
    names = _LAYOUTS[layout]
    out = {"conv_first": "conv_first"}
    for n in range(num_blocks):
        for k in range(1, 4):
            for j in range(1, 6):
                out[str(names["dense"]).format(n=n, k=k, j=j)] = f"body.{n}.blocks.{k - 1}.convs.{j - 1}"
    out[str(names["trunk"])] = "conv_body"
    up1, up2 = names["up"]
    out[up1], out[up2] = "conv_up.0", "conv_up.1"
    out[str(names["hr"])] = "conv_hr"
    out["conv_last"] = "conv_last"
    return out


def key_map(layout: str, num_blocks: int) -> dict[str, str]:
    """{published state-dict key: project state-dict key} (weights and biases)."""
    modules = module_map(layout, num_blocks)
    return {f"{src}.{p}": f"{dst}.{p}" for src, dst in modules.items() for p in ("weight", "bias")}


def _names(keys, limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def read_state(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Load a published .pth (weights_only) and return its generator state dict and its layout."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found") from None
    except Exception as err:  # UnpicklingError for refused pickles, RuntimeError for corrupt archives
        raise CheckpointError(f"{path}: refused or corrupt weights file: {torch_load_problem(err)}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(obj).__name__}")
    if any(k in obj for k in _WRAPPER_KEYS):
        stray = set(obj) - set(_WRAPPER_KEYS)
        if stray:
            raise CheckpointError(f"{path}: unexpected top-level key(s) beside BasicSR's params/params_ema: "
                                  f"{_names(stray)}")
        wrapper = next(k for k in _WRAPPER_KEYS if k in obj)
        state = obj[wrapper]
        if not isinstance(state, dict):
            raise CheckpointError(f"{path}: {wrapper!r} is not a state dict")
        log.info("%s: BasicSR file, using %r", path, wrapper)
    else:
        state = obj
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not named tensors: {_names(map(str, bad))}")
    check_storage(state, path)
    if "RRDB_trunk.0.RDB1.conv1.weight" in state:
        return state, LAYOUT_ESRGAN
    if "body.0.rdb1.conv1.weight" in state:
        return state, LAYOUT_BASICSR
    raise CheckpointError(
        f"{path}: not an ESRGAN generator in the official layout (RRDB_trunk.N.RDBk.convj ...) or BasicSR's "
        f"(body.N.rdbk.convj ...); its keys start: {_names(state, 5)}")


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.3g} MB"


def check_storage(state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse tensors that declare more data than the file holds, before anything is built from their shapes.

    `torch.save` stores a tensor's storage, not its view: an `expand`-ed view of one number can declare
    (20000, 20000, 3, 3) in a few bytes, and building the network those shapes imply, or copying the views
    into it, would allocate what the file never held. So each tensor must be backed by its own stored bytes (a
    stride-0 or overlapping view is not), and the bytes all tensors declare must fit in the file."""
    file_bytes = path.stat().st_size
    total = 0
    for key, t in state.items():
        if t.device.type != "cpu":  # map_location="cpu" maps every real storage; a meta tensor holds no data
            raise CheckpointError(f"{path}: {key} is a {t.device.type} tensor holding no data")
        declared = t.numel() * t.element_size()
        held = t.untyped_storage().nbytes() - t.storage_offset() * t.element_size()
        if declared > held:
            raise CheckpointError(
                f"{path}: {key} declares shape {tuple(t.shape)} ({_megabytes(declared)}) but holds only {held} "
                f"byte(s) of data: an expanded or overlapping view, not stored weights; refused before building "
                f"the network")
        total += declared
    if total > file_bytes:
        raise CheckpointError(f"{path}: its tensors declare {_megabytes(total)} of weights, more than the file's "
                              f"{_megabytes(file_bytes)} (views sharing stored data); refused before building the "
                              f"network")


def _check_size(gcfg: GeneratorConfig, keys: dict[str, str], prefix: str) -> None:
    """The network the shapes imply must pass the config's own sanity bounds (`srgan.config.check_values`):
    a file declaring 20,000 features is refused, naming the key the number was read from."""
    try:
        check_values(replace(esrgan(scale=OFFICIAL_SCALE), generator=gcfg))
    except ValueError as err:
        field = str(err).split(" ")[0].removeprefix("generator.")
        key = keys.get(field, "the file's shapes")
        raise CheckpointError(f"{prefix}{key} implies {err}; refused before building the network") from None


def infer_generator(state: dict[str, torch.Tensor], layout: str, *, where: str = "") -> GeneratorConfig:
    """Blocks, features and growth channels of a published RRDBNet, read from its shapes."""
    prefix = f"{where}: " if where else ""
    first = state.get("conv_first.weight")
    if first is None or first.ndim != 4:
        raise CheckpointError(f"{prefix}missing or malformed key conv_first.weight")
    num_features, in_channels = int(first.shape[0]), int(first.shape[1])
    if in_channels != 3:
        raise CheckpointError(
            f"{prefix}conv_first.weight takes {in_channels} input channels, not 3: BasicSR's x2/x1 RRDBNet "
            f"(pixel-unshuffled input) is not supported; only x4 generators are")
    dense = str(_LAYOUTS[layout]["dense"])
    pattern = re.compile(re.escape(dense.split(".{n}")[0]) + r"\.(\d+)\.")
    indices = {int(m.group(1)) for key in state if (m := pattern.match(key))}
    num_blocks = max(indices) + 1 if indices else 0
    if num_blocks == 0:
        raise CheckpointError(f"{prefix}no RRDB blocks found")
    growth_key = dense.format(n=0, k=1, j=1) + ".weight"
    if growth_key not in state:
        raise CheckpointError(f"{prefix}missing key {growth_key}")
    if state[growth_key].ndim != 4:
        raise CheckpointError(f"{prefix}{growth_key} has shape {tuple(state[growth_key].shape)}, not a conv weight")
    growth = int(state[growth_key].shape[0])
    gcfg = GeneratorConfig(arch="rrdbnet", num_features=num_features, num_blocks=num_blocks, growth=growth,
                           res_scale=0.2, norm="none", output="linear", skip="none")
    last_block = dense.format(n=num_blocks - 1, k=1, j=1) + ".weight"
    _check_size(gcfg, {"num_features": "conv_first.weight", "growth": growth_key, "num_blocks": last_block}, prefix)
    return gcfg


def convert(state: dict[str, torch.Tensor], layout: str, *, where: str = "") -> tuple[dict[str, torch.Tensor],
                                                                                       GeneratorConfig]:
    """Map a published state dict onto the project's RRDBNet keys, checking every key and shape."""
    prefix = f"{where}: " if where else ""
    gcfg = infer_generator(state, layout, where=where)
    mapping = key_map(layout, gcfg.num_blocks)
    missing, stray = set(mapping) - set(state), set(state) - set(mapping)
    if missing:
        raise CheckpointError(f"{prefix}missing key(s) for a {gcfg.num_blocks}-block RRDBNet: {_names(missing)}")
    if stray:
        raise CheckpointError(f"{prefix}unexpected key(s) (not part of the {layout} RRDBNet layout): "
                              f"{_names(stray)}")
    with torch.device("meta"):
        target = build_generator(gcfg, scale=OFFICIAL_SCALE).state_dict()
    if set(target) != set(mapping.values()):  # the map must cover the project model exactly
        raise CheckpointError(f"{prefix}internal key map does not cover the project RRDBNet: "
                              f"{_names(set(target) ^ set(mapping.values()))}")
    out = {}
    for src, dst in mapping.items():
        if state[src].shape != target[dst].shape:
            raise CheckpointError(f"{prefix}{src} has shape {tuple(state[src].shape)}, expected "
                                  f"{tuple(target[dst].shape)} for {gcfg.num_features} features and growth "
                                  f"{gcfg.growth}")
        out[dst] = state[src].to(torch.float32)
    return out, gcfg


def read_generator(path: str | Path) -> tuple[dict[str, torch.Tensor], GeneratorConfig]:
    """A published .pth as (project-layout state dict, generator config); the scale is always 4."""
    state, layout = read_state(path)
    return convert(state, layout, where=str(path))


def official_config(path: str | Path, gcfg: GeneratorConfig) -> ExperimentConfig:
    """The esrgan preset's config around a published generator (named after the file)."""
    return replace(esrgan(scale=OFFICIAL_SCALE), name=Path(path).stem, generator=gcfg)


def load_official_generator(path: str | Path, *, device: str | torch.device = "cpu",
                            expect_scale: int | None = None) -> tuple[nn.Module, ExperimentConfig]:
    """Build the project RRDBNet holding a published .pth's weights, in eval mode."""
    path = Path(path)
    if expect_scale is not None and expect_scale != OFFICIAL_SCALE:
        raise CheckpointError(f"{path}: published ESRGAN weights are x{OFFICIAL_SCALE}, but x{expect_scale} was "
                              f"asked for")
    state, gcfg = read_generator(path)
    net_g = build_generator(gcfg, scale=OFFICIAL_SCALE)
    net_g.load_state_dict(state)
    return net_g.to(device).eval(), official_config(path, gcfg)
