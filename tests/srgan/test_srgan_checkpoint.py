"""Checkpoints: N steps, save, load in a fresh process, M more steps == N + M uninterrupted steps (CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from srgan_helpers import REPO_ROOT, make_dataset, micro, train_metrics

from srgan.checkpoint import (
    CheckpointError,
    load_config,
    load_generator,
    load_training_state,
    save_checkpoint,
)
from srgan.engine import GanEngine

# Runs in one fresh interpreter (importing torch costs seconds): for each job, rebuild the engine from the
# checkpoint's config.json, resume, train M steps, save.
RESUME_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from srgan_helpers import make_dataset, train_metrics
from srgan.checkpoint import load_config, resume, save_checkpoint
from srgan.engine import GanEngine
import torch
torch.set_num_threads(int(sys.argv[3]))  # as in the parent: the same kernels, bit for bit
results = {}
for job in json.loads(sys.argv[2]):
    cfg = load_config(job["ckpt"])
    engine = GanEngine(cfg, device="cpu")
    resume(engine, job["ckpt"])
    dataset = make_dataset(cfg, Path(job["folder"]))
    results[job["name"]] = train_metrics(engine, dataset, start_step=engine.step, num_steps=job["steps"])
    save_checkpoint(engine, job["out"])
print("METRICS " + json.dumps(results))
"""

N, M = 3, 2
CASES = {
    # EMA on; warmup 2 then GAN; an lr milestone at the first resumed step; relativistic; untrained VGG
    "esrgan": {"train__warmup_steps": 2, "optim__milestones": "1", "loss__perceptual_layer": "conv2_2"},
    # EMA off; BatchNorm in G and D (running statistics must resume too); vanilla GAN; sigmoid output
    "v1": {"train__warmup_steps": 2},
}


@pytest.mark.slow  # a second Python process (importing torch takes seconds) and ~15 engine steps
def test_resume_in_a_fresh_process_reproduces_uninterrupted_training(image_folder: Path, tmp_path: Path) -> None:
    expected, straight, jobs = {}, {}, []
    for name, updates in CASES.items():
        cfg = micro(name, **updates)
        assert (cfg.optim.ema_decay > 0) == (name == "esrgan")
        dataset = make_dataset(cfg, image_folder)
        straight[name] = GanEngine(cfg, device="cpu")
        expected[name] = train_metrics(straight[name], dataset, start_step=0, num_steps=N + M)
        assert ["loss_d_real" in m for m in expected[name]] == [False, False] + [True] * (N + M - 2)
        first = GanEngine(cfg, device="cpu")
        assert train_metrics(first, dataset, start_step=0, num_steps=N) == expected[name][:N]
        save_checkpoint(first, tmp_path / name / "ckpt")
        jobs.append({"name": name, "ckpt": str(tmp_path / name / "ckpt"), "folder": str(image_folder),
                     "steps": M, "out": str(tmp_path / name / "resumed")})
    assert expected["esrgan"][N]["lr_g"] == expected["esrgan"][N - 1]["lr_g"] * 0.5  # the milestone was crossed
    torch.manual_seed(999)  # (the global RNG of this process must not matter: the state carries its own)

    proc = subprocess.run(
        [sys.executable, "-c", RESUME_SCRIPT, str(Path(__file__).parent), json.dumps(jobs),
         str(torch.get_num_threads())],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("METRICS "))
    resumed = json.loads(line.removeprefix("METRICS "))
    for name in CASES:
        assert resumed[name] == expected[name][N:], name  # exact equality of every loss, lr and grad norm
        # and the final inference generator (the EMA copy when EMA is on) is bit-identical
        final = load_file(str(tmp_path / name / "resumed" / "generator.safetensors"))
        reference = straight[name].inference_generator().state_dict()
        assert final.keys() == reference.keys()
        assert all(torch.equal(final[k], reference[k]) for k in final), name


def test_checkpoint_folder_contents_and_generator_export(tmp_path: Path) -> None:
    cfg = micro("esrgan", train__warmup_steps=1)
    engine = GanEngine(cfg, device="cpu")
    p, s = cfg.data.patch_size, cfg.scale
    engine.train_step(torch.rand(2, 3, p // s, p // s), torch.rand(2, 3, p, p))
    folder = save_checkpoint(engine, tmp_path / "ckpt")
    assert load_config(folder) == cfg
    meta = json.loads((folder / "config.json").read_text())
    assert meta["step"] == 1 and meta["flags"] == ["untrained-perceptual-vgg19"]
    net_g, cfg2 = load_generator(folder, expect_scale=4)
    assert cfg2 == cfg and not net_g.training
    for k, v in engine.net_g_ema.state_dict().items():  # the export is the EMA generator
        assert torch.equal(net_g.state_dict()[k], v)
    with pytest.raises(CheckpointError, match="x4, but x2"):
        load_generator(folder, expect_scale=2)
    assert load_training_state(folder)["step"] == 1


def test_bad_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_generator(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        load_generator(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="missing"):
        load_training_state(tmp_path / "empty")
    # a pickle that would run code is refused by weights_only loading
    evil = tmp_path / "evil"
    evil.mkdir()
    torch.save({"step": 1, "payload": _Evil()}, evil / "training_state.pt")
    with pytest.raises(CheckpointError, match="refused or corrupt"):
        load_training_state(evil)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))
