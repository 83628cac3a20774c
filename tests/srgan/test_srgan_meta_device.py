"""`train_step` reads no value from the device, for every preset, in both phases, with EMA and grad-norm steps.

On the `meta` device tensors have shapes but no data: reading any value raises, whether project code asks for it
(`.item()`, `float()`, `bool()`) or torch's C++ does it inside an op (indexing with a 0-d tensor calls `.item()`;
so does a tensor weight to `torch._foreach_lerp_`, which only takes a Scalar). So a step that runs here reads
nothing. It sees only the code paths `meta` takes: foreach Adam (fused Adam runs on CUDA and the CPU), no bf16
autocast, no cuDNN. Those are checked on CUDA by `test_cuda_steps_never_synchronise` under
`torch.cuda.set_sync_debug_mode("error")`, skipped without a GPU (`python -m benchmarks.speed.gpu_check` runs it too).
"""

from __future__ import annotations

import pytest
import torch
from srgan_helpers import tiny

from srgan import engine as engine_module
from srgan.config import ExperimentConfig, override
from srgan.engine import GanEngine
from srgan.versions import preset

PRESETS = ("v1", "v2", "v3", "ragan", "esrgan")


def full_size(name: str, **updates) -> ExperimentConfig:
    """A full-size preset, two warmup steps, untrained VGG (no ImageNet weights here)."""
    return override(preset(name), {"loss.perceptual_weights": "untrained", "train.warmup_steps": 2, **updates})


CONFIGS = {
    **{f"{name}-tiny": (lambda name=name: tiny(name)) for name in PRESETS},
    "v3-tiny-ema": lambda: tiny("v3", optim__ema_decay=0.9),  # EMA through an SRResNet warmup and GAN phase
    "v3": lambda: full_size("v3"),  # the papers' network sizes (about 2 s on meta; full ESRGAN takes 12 s)
}


def run_steps(eng: GanEngine, device: str) -> list[str]:
    """Every warmup step, then three GAN steps (the lead's pre-stop check runs the same, all without grad
    norms); G and D grad norms in the first and the last step. Returns the phase of each step run."""
    cfg = eng.cfg
    b, p, s = cfg.data.batch_size, cfg.data.patch_size, cfg.scale
    lq, gt = torch.rand(b, 3, p // s, p // s, device=device), torch.rand(b, 3, p, p, device=device)
    total = cfg.train.warmup_steps + 3
    phases = []
    for i in range(total):
        phases.append(eng.phase)
        eng.train_step(lq, gt, grad_norms=i in (0, total - 1))
    return phases


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_preset_steps_on_the_meta_device(name: str) -> None:
    cfg = CONFIGS[name]()
    eng = GanEngine(cfg, device="meta")
    phases = run_steps(eng, "meta")
    assert phases.count("gan") == 3 and phases.count("warmup") == cfg.train.warmup_steps
    assert (eng.net_g_ema is not None) == (name in ("esrgan-tiny", "v3-tiny-ema"))
    assert eng.record.bad_key.device.type == "meta" and eng.step == len(phases)
    assert name.startswith("v1") or "warmup" in phases  # every preset but v1 has a warmup


def test_a_planted_item_call_fails_the_meta_check(monkeypatch: pytest.MonkeyPatch) -> None:
    real_pixel_loss = engine_module.pixel_loss

    def reads_the_loss(sr, gt, kind):
        loss = real_pixel_loss(sr, gt, kind)
        if loss.item() > 1e9:  # a host read, as a "skip huge losses" check would make
            raise AssertionError("unreachable")
        return loss

    monkeypatch.setattr(engine_module, "pixel_loss", reads_the_loss)
    eng = GanEngine(tiny("v2"), device="meta")
    with pytest.raises(RuntimeError, match="meta"):
        run_steps(eng, "meta")


def test_a_read_inside_torch_fails_the_meta_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bug this test was written for: indexing with a 0-d tensor reads it in C++ (pytorch#105641)."""
    real_add = engine_module.StepRecord.add

    def add_and_index(self, phase, values):
        vec = torch.stack([v.detach().double() for v in values.values()])
        vec[torch.argmax(vec)]  # the first value's index as a 0-d tensor, then indexing with it
        real_add(self, phase, values)

    monkeypatch.setattr(engine_module.StepRecord, "add", add_and_index)
    eng = GanEngine(tiny("esrgan"), device="meta")
    with pytest.raises(RuntimeError, match="meta"):
        run_steps(eng, "meta")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", ["off", "bf16"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_cuda_steps_never_synchronise(name: str, amp: str) -> None:
    """The same steps on CUDA (fused Adam, bf16 autocast when asked), every one of them under
    `torch.cuda.set_sync_debug_mode("error")`: any host synchronisation raises."""
    cfg = override(CONFIGS[name](), {"optim.amp": amp})
    eng = GanEngine(cfg, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        run_steps(eng, "cuda")
    finally:
        torch.cuda.set_sync_debug_mode("default")
    metrics = eng.pop_metrics()  # the one copy, outside the checked steps
    assert metrics["steps"] == cfg.train.warmup_steps + 3 and "d_gap" in metrics
