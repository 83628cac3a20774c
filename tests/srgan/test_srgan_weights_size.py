"""Weights that declare more than they hold (issue 18.3): refused with a `CheckpointError` naming the key, before
the network their shapes imply is built, and cheaply.

`torch.save` stores a tensor's storage, not its view, so an `expand`-ed view of one number declares any shape in
a few bytes. The files are built here. "Cheaply" is checked by running the command line tools in a subprocess
whose address space is capped (RLIMIT_AS) at 1 GiB above what it holds after its imports; a control run of the
same file, with the checks switched off, shows that the cap does stop the allocation they prevent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_srgan_official import F_, G_, published_shapes, random_official

from srgan.checkpoint import GENERATOR_FILE, CheckpointError, load_generator, load_init_generator, save_generator
from srgan.generator import build_generator
from srgan.images import save_image
from srgan.versions import preset

REPO = Path(__file__).resolve().parents[2]
HEADROOM = 1 << 30  # bytes of address space the capped process may add to what its imports took

_CAPPED = """
import importlib, resource, sys
import torch
torch.set_num_threads(1)
import srgan.checkpoint, srgan.data, srgan.official, tqdm  # imports are not what is measured
tool = importlib.import_module({"upscale": "srgan.upscale", "evaluate": "benchmarks.evaluate"}[sys.argv[3]])
status = open("/proc/self/status").read()
used = int(next(line for line in status.splitlines() if line.startswith("VmSize:")).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (used + int(sys.argv[1]), used + int(sys.argv[1])))
if sys.argv[2] == "unchecked":  # the control: the size checks switched off
    srgan.official.check_storage = lambda state, path: None
    srgan.official._check_size = lambda *args: None
    srgan.checkpoint._check_fit = lambda *args: None
sys.exit(tool.main(sys.argv[4:]))
"""


def capped(tool: str, *args: str, checks: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _CAPPED, str(HEADROOM), "checked" if checks else "unchecked", tool,
                           *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def view_bomb(path: Path, *, features: int = 20_000, growth: int = 32, blocks: int = 1) -> Path:
    """An official-layout file whose every tensor is an expanded view of one stored zero: ~9 KB on disk,
    declaring ~100 GB for 20,000 features."""
    one = torch.zeros(1)
    torch.save({k: one.expand(s) if len(s) == 1 else one.view(1, 1, 1, 1).expand(s)
                for k, s in published_shapes(features, growth, blocks).items()}, path)
    return path


@pytest.fixture(autouse=True)
def _linux_only() -> None:
    if not Path("/proc/self/status").is_file():
        pytest.skip("the address-space cap reads /proc (Linux)")


def test_the_view_bomb_is_what_the_issue_describes(tmp_path: Path) -> None:
    path = view_bomb(tmp_path / "bomb.pth")
    state = torch.load(path, weights_only=True)
    declared = sum(t.numel() * t.element_size() for t in state.values())
    assert path.stat().st_size < 16_000 and declared > 50e9  # a few KB on disk, tens of GB declared


def test_a_view_bomb_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = view_bomb(tmp_path / "bomb.pth")
    with pytest.raises(CheckpointError, match=r"conv_first\.weight declares shape \(20000, 3, 3, 3\) \(2\.16 MB\) "
                                              r"but holds only 4 byte\(s\) of data: an expanded or overlapping view"):
        load_generator(path)
    cfg = preset("esrgan-tiny", scale=4)
    with pytest.raises(CheckpointError, match="expanded or overlapping view"):
        load_init_generator(path, cfg)  # --init-from reads it the same way


@pytest.mark.parametrize("tool", ["upscale", "evaluate"])
def test_the_command_line_tools_refuse_it_cheaply_with_exit_code_2(tmp_path: Path, tool: str) -> None:
    path = view_bomb(tmp_path / "bomb.pth")
    image = tmp_path / "in.png"
    save_image(torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0)), image)
    args = {"upscale": [str(image), str(tmp_path / "out.png"), "--checkpoint", str(path), "--device", "cpu"],
            "evaluate": ["--checkpoint", str(path), "--datasets", "set5", "--scale", "4", "--out",
                         str(tmp_path / "scores"), "--device", "cpu", "--data-root", str(tmp_path)]}[tool]
    done = capped(tool, *args)
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"error: {path}: conv_first.weight declares shape (20000, 3, 3, 3)" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out.png").exists()


def test_the_cap_stops_what_the_checks_prevent(tmp_path: Path) -> None:
    """The control: without the checks the same file builds a 20,000-feature network and fails on the cap."""
    path = view_bomb(tmp_path / "bomb.pth")
    image = tmp_path / "in.png"
    save_image(torch.rand(3, 8, 8), image)
    done = capped("upscale", str(image), str(tmp_path / "out.png"), "--checkpoint", str(path), "--device", "cpu",
                  checks=False)
    assert done.returncode == 1 and "can't allocate memory" in done.stderr, done.stderr[-3000:]


def test_views_that_share_one_real_storage_are_refused_by_the_file_size(tmp_path: Path) -> None:
    """Each tensor a dense slice of one stored buffer (so each is backed by enough bytes on its own): together
    they declare the full ESRGAN's 67 MB from a file of about 0.5 MB."""
    shapes = published_shapes(64, 32, 23)
    base = torch.randn(max(torch.Size(s).numel() for s in shapes.values())) * 0.01
    path = tmp_path / "shared.pth"
    torch.save({k: base[: torch.Size(s).numel()].view(s) for k, s in shapes.items()}, path)
    size = path.stat().st_size
    assert size < 600_000
    with pytest.raises(CheckpointError, match=rf"its tensors declare 66\.8 MB of weights, more than the file's "
                                              rf"{size / 1e6:.3g} MB"):
        load_generator(path)


@pytest.mark.parametrize("extra,message", [
    ({"conv_first.weight": torch.zeros(2000, 3, 3, 3)},
     "conv_first.weight implies generator.num_features must be between 1 and 1024, got 2000"),
    ({"RRDB_trunk.0.RDB1.conv1.weight": torch.zeros(5000, F_, 3, 3)},
     "RRDB_trunk.0.RDB1.conv1.weight implies generator.growth must be between 1 and 1024, got 5000"),
    ({"RRDB_trunk.300.RDB1.conv1.weight": torch.zeros(G_, F_, 3, 3)},
     "RRDB_trunk.300.RDB1.conv1.weight implies generator.num_blocks must be between 1 and 256, got 301"),
])
def test_stored_shapes_beyond_the_config_bounds_are_refused(tmp_path: Path, extra: dict, message: str) -> None:
    """Really stored (not views), but a network srgan.config.check_values would refuse: named before any key map
    of 301 blocks or any network is built."""
    state = random_official()
    state.update(extra)
    path = tmp_path / "big.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=message) as err:
        load_generator(path)
    assert str(path) in str(err.value)


def test_meta_tensors_are_refused(tmp_path: Path) -> None:
    """torch.load keeps a saved meta tensor on the meta device whatever map_location says; it holds no data."""
    state = random_official()
    state["conv_first.weight"] = torch.empty(F_, 3, 3, 3, device="meta")
    path = tmp_path / "meta.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="conv_first.weight is a meta tensor holding no data"):
        load_generator(path)


def _inflated_config(folder: Path) -> Path:
    """A tiny v3 checkpoint whose config.json claims a 1024-feature, 256-block SRResNet (inside check_values'
    bounds, about 19 GB of weights) beside its real generator.safetensors of 16 features and 2 blocks."""
    cfg = preset("v3-tiny", scale=2)
    save_generator(build_generator(cfg.generator, scale=2), cfg, folder)
    config = folder / "config.json"
    payload = json.loads(config.read_text())
    payload["config"]["generator"].update(num_features=1024, num_blocks=256)
    config.write_text(json.dumps(payload))
    return folder


def test_a_config_claiming_more_than_its_weights_hold_is_refused_before_building(tmp_path: Path) -> None:
    folder = _inflated_config(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=rf"{GENERATOR_FILE}: weights do not fit the config's srresnet "
                                              r"generator: missing keys body\.10\..*; body\.0\.act\.weight has "
                                              r"shape \(16,\), expected \(1024,\)"):
        load_generator(folder)
    image = tmp_path / "in.png"
    save_image(torch.rand(3, 8, 8), image)
    done = capped("upscale", str(image), str(tmp_path / "out.png"), "--checkpoint", str(folder), "--device", "cpu")
    assert done.returncode == 2 and "weights do not fit the config's srresnet generator" in done.stderr, done.stderr
    control = capped("upscale", str(image), str(tmp_path / "out.png"), "--checkpoint", str(folder), "--device",
                     "cpu", checks=False)
    assert control.returncode == 1 and "can't allocate memory" in control.stderr, control.stderr[-3000:]
