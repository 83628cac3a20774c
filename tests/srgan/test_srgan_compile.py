"""`train.compile`: a compiled engine trains like the eager one (same losses within float tolerance) and keeps
the state-dict keys checkpoints use."""

from __future__ import annotations

import pytest
import torch
from srgan_helpers import micro

from srgan.engine import GanEngine, compile_mode


def run(cfg, steps: int) -> tuple[list[dict], GanEngine]:
    engine = GanEngine(cfg, device="cpu")
    rows = []
    for i in range(steps):
        gen = torch.Generator().manual_seed(i)
        p, s = cfg.data.patch_size, cfg.scale
        gt = torch.rand(2, 3, p, p, generator=gen)
        lq = torch.nn.functional.avg_pool2d(gt, s)
        engine.train_step(lq, gt, grad_norms=True)
        rows.append(engine.pop_metrics())
    return rows, engine


@pytest.mark.slow  # inductor compiles G and D forward and backward: about a minute on a busy 2-core CPU
def test_compiled_engine_gives_the_eager_losses() -> None:
    import torch._dynamo

    torch._dynamo.reset()
    # v2 (BatchNorm in G and D): one warmup step, then two GAN steps (G with D frozen, D on real and fake)
    cfg = micro("v2", train__warmup_steps=1)
    eager, _ = run(cfg, 3)
    compiled, engine = run(micro("v2", train__warmup_steps=1, train__compile="default"), 3)
    assert engine.net_g._compiled_call_impl is not None  # really compiled
    assert list(engine.net_g.state_dict()) == list(GanEngine(cfg).net_g.state_dict())  # keys unchanged
    for e, c in zip(eager, compiled, strict=True):
        assert e.keys() == c.keys()
        for key in e:
            assert c[key] == pytest.approx(e[key], rel=1e-4, abs=1e-6), key


def test_compile_modes() -> None:
    assert compile_mode("default") is None
    assert compile_mode("max-autotune") == "max-autotune-no-cudagraphs"
