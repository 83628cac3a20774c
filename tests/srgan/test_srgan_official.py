"""Published ESRGAN weights: both layouts load, compute the official architecture's function, and bad files fail
with errors that name the problem.

The official state dicts here are built by the test from the published key names and shapes (xinntao/ESRGAN's
RRDB_ESRGAN_x4.pth / RRDB_PSNR_x4.pth and BasicSR's RRDBNet); the reference forward pass below is written from
the published architecture, reading those keys directly, independently of the project's RRDBNet."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from srgan.checkpoint import CheckpointError, load_generator
from srgan.generator import rrdbnet
from srgan.official import key_map, read_state

F_, G_, NB = 8, 4, 2  # features, growth, RRDB blocks: small, so the test runs in milliseconds


def published_shapes(f: int, g: int, nb: int) -> dict[str, tuple[int, ...]]:
    """The official ESRGAN file's keys and shapes (xinntao/ESRGAN RRDBNet_arch: nf=f, gc=g, nb blocks)."""
    shapes = {"conv_first.weight": (f, 3, 3, 3), "conv_first.bias": (f,)}
    for n in range(nb):
        for k in (1, 2, 3):
            for j in (1, 2, 3, 4, 5):
                out = g if j < 5 else f
                shapes[f"RRDB_trunk.{n}.RDB{k}.conv{j}.weight"] = (out, f + (j - 1) * g, 3, 3)
                shapes[f"RRDB_trunk.{n}.RDB{k}.conv{j}.bias"] = (out,)
    for name in ("trunk_conv", "upconv1", "upconv2", "HRconv"):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (f, f, 3, 3), (f,)
    shapes["conv_last.weight"], shapes["conv_last.bias"] = (3, f, 3, 3), (3,)
    return shapes


def random_official(f: int = F_, g: int = G_, nb: int = NB, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=gen) * 0.05 for k, s in published_shapes(f, g, nb).items()}


def to_basicsr(official: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the official keys to BasicSR's (RRDB_trunk.N.RDBk -> body.N.rdbk, trunk_conv -> conv_body, ...)."""
    renames = {"trunk_conv": "conv_body", "upconv1": "conv_up1", "upconv2": "conv_up2", "HRconv": "conv_hr"}
    out = {}
    for key, value in official.items():
        module, _, param = key.rpartition(".")
        if module.startswith("RRDB_trunk."):
            _, n, rdb, conv = module.split(".")
            module = f"body.{n}.rdb{rdb[3:]}.{conv}"
        out[f"{renames.get(module, module)}.{param}"] = value
    return out


def official_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, nb: int) -> torch.Tensor:
    """ESRGAN's RRDBNet forward pass, written from the paper and the official code's structure."""
    def conv(name: str, t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1)

    def lrelu(t: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(t, 0.2)

    fea = conv("conv_first", x)
    trunk = fea
    for n in range(nb):
        rrdb_in = out = trunk
        for k in (1, 2, 3):
            feats = [out]
            for j in (1, 2, 3, 4):
                feats.append(lrelu(conv(f"RRDB_trunk.{n}.RDB{k}.conv{j}", torch.cat(feats, 1))))
            out = conv(f"RRDB_trunk.{n}.RDB{k}.conv5", torch.cat(feats, 1)) * 0.2 + out  # residual scaling 0.2
        trunk = out * 0.2 + rrdb_in
    fea = fea + conv("trunk_conv", trunk)
    fea = lrelu(conv("upconv1", F.interpolate(fea, scale_factor=2, mode="nearest")))
    fea = lrelu(conv("upconv2", F.interpolate(fea, scale_factor=2, mode="nearest")))
    return conv("conv_last", lrelu(conv("HRconv", fea)))


def project_to_official(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The project's RRDBNet weights under the published key names (the test's own map, by module role)."""
    sd = net.state_dict()
    out = {}
    for key, value in sd.items():
        module, _, param = key.rpartition(".")
        parts = module.split(".")
        if parts[0] == "body":  # body.N.blocks.K.convs.J
            name = f"RRDB_trunk.{parts[1]}.RDB{int(parts[3]) + 1}.conv{int(parts[5]) + 1}"
        else:
            name = {"conv_first": "conv_first", "conv_body": "trunk_conv", "conv_up.0": "upconv1",
                    "conv_up.1": "upconv2", "conv_hr": "HRconv", "conv_last": "conv_last"}[module]
        out[f"{name}.{param}"] = value.clone()
    return out


@pytest.fixture
def lq() -> torch.Tensor:
    return torch.rand(2, 3, 6, 7, generator=torch.Generator().manual_seed(1))


def test_official_layout_computes_the_published_architecture(tmp_path: Path, lq: torch.Tensor) -> None:
    official = random_official()
    path = tmp_path / "RRDB_ESRGAN_x4.pth"
    torch.save(official, path)
    net, cfg = load_generator(path, expect_scale=4)
    assert (cfg.generator.num_features, cfg.generator.num_blocks, cfg.generator.growth) == (F_, NB, G_)
    assert cfg.scale == 4 and cfg.name == "RRDB_ESRGAN_x4"
    with torch.no_grad():
        sr = net(lq)
        expected = official_forward(official, lq, NB)
    assert sr.shape == (2, 3, 24, 28)
    torch.testing.assert_close(sr, expected, rtol=0, atol=1e-6)


def test_basicsr_layout_uses_params_ema(tmp_path: Path, lq: torch.Tensor) -> None:
    ema, raw = random_official(seed=2), random_official(seed=3)
    path = tmp_path / "ESRGAN_SRx4.pth"
    torch.save({"params": to_basicsr(raw), "params_ema": to_basicsr(ema)}, path)
    net, _ = load_generator(path)
    with torch.no_grad():
        torch.testing.assert_close(net(lq), official_forward(ema, lq, NB), rtol=0, atol=1e-6)
    torch.save({"params": to_basicsr(raw)}, path)  # only "params": those are used
    net, _ = load_generator(path)
    with torch.no_grad():
        torch.testing.assert_close(net(lq), official_forward(raw, lq, NB), rtol=0, atol=1e-6)


@pytest.mark.parametrize("layout", ["official", "basicsr", "basicsr-wrapped"])
def test_round_trip_from_a_project_model_is_exact(tmp_path: Path, lq: torch.Tensor, layout: str) -> None:
    torch.manual_seed(4)
    net = rrdbnet(scale=4, num_features=F_, num_blocks=NB, growth=G_).eval()
    with torch.no_grad():
        for p in net.parameters():  # the RDB biases start at zero: make every parameter count
            p.add_(torch.randn_like(p) * 0.01)
    official = project_to_official(net)
    state = {"official": official, "basicsr": to_basicsr(official),
             "basicsr-wrapped": {"params_ema": to_basicsr(official)}}[layout]
    path = tmp_path / "g.pth"
    torch.save(state, path)
    loaded, _ = load_generator(path)
    with torch.no_grad():
        assert torch.equal(loaded(lq), net(lq))
        torch.testing.assert_close(net(lq), official_forward(official, lq, NB), rtol=0, atol=1e-6)


def test_full_size_key_map_matches_the_published_file() -> None:
    shapes = published_shapes(64, 32, 23)
    assert len(shapes) == 702  # RRDB_ESRGAN_x4.pth: 351 convs, weight and bias each
    assert sum(torch.Size(s).numel() for s in shapes.values()) == 16_697_987
    with torch.device("meta"):
        project = rrdbnet(scale=4).state_dict()
    for layout, names in (("esrgan", shapes), ("basicsr", to_basicsr({k: torch.empty(0) for k in shapes}))):
        mapping = key_map(layout, 23)
        assert set(mapping) == set(names)
        assert sorted(mapping.values()) == sorted(project)
    for src, dst in key_map("esrgan", 23).items():
        assert tuple(project[dst].shape) == shapes[src], src


@pytest.mark.parametrize("mutate,message", [
    (lambda sd: sd.update({"RRDB_trunk.0.RDB1.conv6.weight": torch.zeros(1)}), "RRDB_trunk.0.RDB1.conv6.weight"),
    (lambda sd: sd.pop("HRconv.bias"), "HRconv.bias"),
    (lambda sd: sd.update({"conv_last.weight": torch.zeros(3, F_, 5, 5)}), "conv_last.weight has shape (3, 8, 5, 5)"),
    (lambda sd: sd.update({"RRDB_trunk.1.RDB2.conv3.weight": torch.zeros(G_, F_ + G_, 3, 3)}),
     "RRDB_trunk.1.RDB2.conv3.weight has shape"),
    (lambda sd: sd.update({"conv_first.weight": torch.zeros(F_, 12, 3, 3)}), "12 input channels"),
])
def test_bad_state_dicts_name_the_problem(tmp_path: Path, mutate, message: str) -> None:
    sd = random_official()
    mutate(sd)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        load_generator(path)
    assert str(path) in str(err.value)


def test_wrapper_with_stray_entries_and_wrong_scale_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save({"params": to_basicsr(random_official()), "optimizer": {}}, path)
    with pytest.raises(CheckpointError, match="optimizer"):
        load_generator(path)
    torch.save(random_official(), path)
    with pytest.raises(CheckpointError, match="x4, but x2"):
        load_generator(path, expect_scale=2)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickles_that_run_code_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Refused without echoing PyTorch's advice (issue 18.9): retrying with weights_only=False, or allowlisting the
    class, is how a file from elsewhere gets to run its code."""
    path = tmp_path / "evil.pth"
    with path.open("wb") as fh:
        pickle.dump({"conv_first.weight": _Payload()}, fh, protocol=2)
    with pytest.raises(CheckpointError, match="refused or corrupt weights file: refused: it holds a pickled object "
                                              "that could run code when loaded") as err:
        load_generator(path)
    message = str(err.value)
    assert str(path) in message and "print" in message  # names the file and what the pickle would call
    for advice in ("weights_only", "add_safe_globals", "safe_globals", "Please", "trust"):
        assert advice not in message, message
    assert "this must never run" not in capsys.readouterr().out


def test_a_truncated_file_is_named_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "cut.pth"
    torch.save(random_official(), path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match=r"refused or corrupt weights file: corrupt or truncated \(") as err:
        read_state(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def _published_files() -> list[tuple[Path, str]]:
    from benchmarks.scoring.datasets import data_root

    table = data_root() / "pretrained" / "WEIGHTS.tsv"
    if not table.is_file():
        return []
    with table.open() as fh:
        return [(table.parent / row["file"], row["source_repo"]) for row in csv.DictReader(fh, delimiter="\t")]


def test_real_published_checkpoints() -> None:
    """Every .pth in the shared data's WEIGHTS.tsv loads with weights_only=True; ESRGAN ones load as
    generators, the others (IMDN, PAN here) are refused with a message naming the layouts read."""
    files = [(p, repo) for p, repo in _published_files() if p.suffix == ".pth" and p.is_file()]
    if not files:
        pytest.skip("no published checkpoints in the shared data")
    for path, repo in files:
        if "esrgan" in repo.lower() or "basicsr" in repo.lower() or path.name.startswith("RRDB"):
            net, cfg = load_generator(path)
            assert cfg.generator.arch == "rrdbnet"
        else:
            with pytest.raises(CheckpointError, match="not an ESRGAN generator") as err:
                read_state(path)
            assert str(path) in str(err.value)


def test_evaluate_and_upscale_accept_a_pth(tmp_path: Path, data: Path) -> None:
    """`benchmarks.evaluate --checkpoint X.pth` and `srgan.upscale --checkpoint X.pth` run on a published-layout
    file (random weights: the scores are not checked, only that the commands work end to end)."""
    from benchmarks.evaluate import main as evaluate
    from srgan.upscale import main as upscale

    path = tmp_path / "RRDB_PSNR_x4.pth"
    torch.save(random_official(), path)
    out = tmp_path / "scores"
    assert evaluate(["--checkpoint", str(path), "--datasets", "set5", "--scale", "4", "--metrics", "psnr,ssim",
                     "--out", str(out), "--device", "cpu", "--data-root", str(data)]) == 0
    assert (out / "summary.json").is_file()
    image = next((data / "Set5" / "LRbicx4").glob("*.png"))
    assert upscale([str(image), str(tmp_path / "sr.png"), "--checkpoint", str(path), "--device", "cpu"]) == 0
    assert (tmp_path / "sr.png").is_file()
