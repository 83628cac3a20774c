"""`python -m srgan.upscale` never loses data (issue 9.7): colliding outputs and outputs over inputs are refused
before anything is written, and a model producing NaN or inf fails with the file named instead of writing a
black (or white) image."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from srgan.checkpoint import save_generator
from srgan.generator import build_generator
from srgan.images import save_image
from srgan.upscale import NonFiniteOutputError, UpscaleError, check_finite_output, main, plan_outputs, upscale
from srgan.versions import preset


def _checkpoint(folder: Path, *, poison: float | None = None) -> Path:
    """A tiny x2 v3 checkpoint; `poison` sets the last conv's bias (NaN or inf) so every output pixel is it."""
    cfg = preset("v3-tiny", scale=2)
    torch.manual_seed(0)
    net = build_generator(cfg.generator, scale=2).eval()
    if poison is not None:
        with torch.no_grad():
            net.tail.bias.fill_(poison)
    return save_generator(net, cfg, folder)


def _images(folder: Path, names: list[str]) -> dict[str, bytes]:
    for i, name in enumerate(names):
        save_image(torch.rand(3, 12, 10, generator=torch.Generator().manual_seed(i)), folder / name)
    return {name: (folder / name).read_bytes() for name in names}


def _run(tmp_path: Path, src: Path, dst: Path, capsys: pytest.CaptureFixture, *extra: str) -> tuple[int, str]:
    code = main([str(src), str(dst), "--checkpoint", str(_checkpoint(tmp_path / "ckpt")), *extra])
    return code, capsys.readouterr().err


# ----------------------------------------------------------------------------------------- collisions


@pytest.mark.parametrize("names", [["a.jpg", "a.png"], ["b.bmp", "B.png", "c.png"]])
def test_inputs_that_would_share_an_output_are_refused(tmp_path: Path, capsys, names: list[str]) -> None:
    src = tmp_path / "in"
    _images(src, names)
    code, err = _run(tmp_path, src, tmp_path / "out", capsys)
    assert code == 2
    first, second = sorted(names, key=str)[:2]  # list_images order
    assert str(src / first) in err and str(src / second) in err and "both be written" in err
    assert not (tmp_path / "out").exists()  # checked before anything is written


# ------------------------------------------------------------------------------------ never over inputs


def test_output_folder_equal_to_the_input_folder_is_refused(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    before = _images(src, ["x.png", "y.jpg"])
    (tmp_path / "link").symlink_to(src, target_is_directory=True)
    for out in (src, tmp_path / "in" / ".." / "in", tmp_path / "link"):
        code, err = _run(tmp_path, src, out, capsys)
        assert code == 2 and "is the input folder" in err, (out, err)
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # nothing written, nothing changed


def test_output_file_that_is_the_input_is_refused(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    before = _images(src, ["x.png"])
    (tmp_path / "alias.png").symlink_to(src / "x.png")
    os.link(src / "x.png", tmp_path / "hard.png")
    for out in (src / "x.png", tmp_path / "alias.png", tmp_path / "hard.png"):
        code, err = _run(tmp_path, src / "x.png", out, capsys)
        assert code == 2 and f"is the input {src / 'x.png'}" in err, (out, err)
    assert (src / "x.png").read_bytes() == before["x.png"]


def test_one_file_into_its_own_folder_is_refused_unless_named(tmp_path: Path, capsys) -> None:
    """x.jpg into its own folder would write x.png there, over whatever x.png the user keeps beside it."""
    src = tmp_path / "in"
    before = _images(src, ["x.jpg", "x.png"])
    code, err = _run(tmp_path, src / "x.jpg", src, capsys)
    assert code == 2 and "is the input folder" in err
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
    code, _ = _run(tmp_path, src / "x.jpg", src / "x_sr.png", capsys)  # a name the user chose: fine
    assert code == 0 and (src / "x_sr.png").is_file() and (src / "x.png").read_bytes() == before["x.png"]


def test_an_output_folder_holding_an_input_hard_link_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "in"
    _images(src, ["x.png"])
    (tmp_path / "out").mkdir()
    os.link(src / "x.png", tmp_path / "out" / "x.png")
    with pytest.raises(UpscaleError, match="is the input"):
        plan_outputs(src, tmp_path / "out")


def test_a_subfolder_of_the_input_is_a_fine_output(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    before = _images(src, ["x.png", "y.jpg"])
    code, _ = _run(tmp_path, src, src / "sr", capsys)
    assert code == 0 and sorted(p.name for p in (src / "sr").iterdir()) == ["x.png", "y.png"]
    assert {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()} == before


# ------------------------------------------------------------------------------------ non-finite output


@pytest.mark.parametrize("poison", [math.nan, math.inf])
@pytest.mark.parametrize("tile", [None, "4"])
def test_non_finite_model_output_fails_naming_the_file(tmp_path: Path, capsys, poison: float,
                                                      tile: str | None) -> None:
    """NaN would have become a black image, +inf a white one (clamping); both exit 1 and write nothing."""
    src = tmp_path / "in"
    _images(src, ["x.png"])
    extra = ["--tile", tile] if tile else []
    code = main([str(src), str(tmp_path / "out"), "--checkpoint",
                 str(_checkpoint(tmp_path / "bad", poison=poison)), *extra])
    err = capsys.readouterr().err
    assert code == 1
    total = 3 * 24 * 20 if tile is None else 3 * 8 * 8  # the whole output, or its first tile's
    assert f"{src / 'x.png'}: the model output holds {total} non-finite value(s) (NaN or inf) of {total}" in err
    assert not (tmp_path / "out" / "x.png").exists()


def test_check_finite_output() -> None:
    check_finite_output(torch.rand(2, 3, 4, 4), "fine")
    bad = torch.zeros(1, 3, 2, 2)
    bad[0, 1, 1, 0] = float("-inf")
    with pytest.raises(NonFiniteOutputError, match=r"^set5/baby: the model output holds 1 non-finite value\(s\)"):
        check_finite_output(bad, "set5/baby")


def test_upscale_checks_every_tile_before_clamping() -> None:
    """One bad tile among many is caught, and named as the caller names the image."""

    class HotSpot(nn.Module):  # x2 nearest upscaler that emits inf where the input is exactly 0.5
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
            return out.masked_fill(out == 0.5, float("inf"))

    lq = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(0)) * 0.4
    assert torch.isfinite(upscale(HotSpot(), lq, 2, tile=5, overlap=0)).all()
    lq[0, 0, 17, 3] = 0.5
    with pytest.raises(NonFiniteOutputError, match="^img.png: .* holds 4 non-finite"):
        upscale(HotSpot(), lq, 2, tile=5, overlap=0, name="img.png")


# --------------------------------------------------------------------------------- what OUTPUT names


def test_an_unknown_output_extension_is_refused_not_made_a_folder(tmp_path: Path, capsys) -> None:
    """Issue 18.9: `one.png out.xyz` used to create a folder out.xyz/ holding one.png."""
    _images(tmp_path, ["one.png"])
    for name in ("out.xyz", "out.PGM", "results.v2"):
        code, err = _run(tmp_path, tmp_path / "one.png", tmp_path / name, capsys)
        suffix = name[name.index("."):]
        assert code == 2 and f"{tmp_path / name}: {suffix!r} is not an image format this writes" in err, err
        assert "Nothing was written" in err and not (tmp_path / name).exists()


@pytest.mark.parametrize("name,written", [("out.JPG", "out.JPG"), ("out.tiff", "out.tiff"), ("out", "out/one.png")])
def test_an_output_file_or_a_new_folder(tmp_path: Path, capsys, name: str, written: str) -> None:
    _images(tmp_path, ["one.png"])
    code, _ = _run(tmp_path, tmp_path / "one.png", tmp_path / name, capsys)
    assert code == 0 and (tmp_path / written).is_file()


def test_an_existing_folder_with_a_dot_is_a_folder(tmp_path: Path, capsys) -> None:
    _images(tmp_path, ["one.png"])
    (tmp_path / "results.v2").mkdir()
    code, _ = _run(tmp_path, tmp_path / "one.png", tmp_path / "results.v2", capsys)
    assert code == 0 and (tmp_path / "results.v2" / "one.png").is_file()


def test_a_folder_input_needs_a_folder_output(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    _images(src, ["x.png"])
    code, err = _run(tmp_path, src, tmp_path / "out.png", capsys)
    assert code == 2 and f"{src} is a folder, so the output must be a folder, but {tmp_path / 'out.png'} names an " \
                          "image file" in err
    (tmp_path / "file").write_text("not a folder")
    code, err = _run(tmp_path, src, tmp_path / "file", capsys)
    assert code == 2 and "is a file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "file", "in"]
