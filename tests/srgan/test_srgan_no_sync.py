"""No synchronising tensor call from project code inside `train_step`, on the CPU; metrics come back through
`pop_metrics`, which raises on a non-finite loss of an earlier step (on every rank).

What `SyncCounter` sees: the tensor methods that copy a value to the host (`.item()`, `float()`, `bool()`,
`.tolist()`, `.numpy()`, `.cpu()`...) when a project file calls them, through torch's Python dispatch. What it
cannot see: reads that torch makes inside its C++ (indexing with a 0-d tensor, a tensor weight to a Scalar-only op
such as `torch._foreach_lerp_`: `test_the_counter_cannot_see_a_read_inside_torch` plants one), and code paths
that only CUDA takes. tests/srgan/test_srgan_meta_device.py checks those reads on the meta device, and on CUDA
under the sync debug mode."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from srgan_helpers import REPO_ROOT, micro
from torch.overrides import TorchFunctionMode

from srgan.engine import GanEngine, NonFiniteLoss

# Tensor methods that copy a value to the host (and so wait for the device to finish everything queued).
SYNCING = {"item", "__float__", "__int__", "__index__", "__bool__", "tolist", "numpy", "cpu"}
PROJECT_DIRS = tuple(str(REPO_ROOT / d) for d in ("srgan", "benchmarks", "harness", "results"))


class SyncCounter(TorchFunctionMode):
    """Records (method, file:line) of every syncing call whose caller is a project file."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in SYNCING:
            caller = sys._getframe(1)  # the frame that called the tensor method
            if caller.f_code.co_filename.startswith(PROJECT_DIRS):
                self.calls.append((name, f"{Path(caller.f_code.co_filename).name}:{caller.f_lineno}"))
        return func(*args, **(kwargs or {}))


def batch(cfg, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    p, s = cfg.data.patch_size, cfg.scale
    return torch.rand(2, 3, p // s, p // s, generator=gen), torch.rand(2, 3, p, p, generator=gen)


@pytest.mark.parametrize("name", ["v1", "v2", "v3", "ragan", "esrgan"])
def test_train_step_makes_no_synchronising_call_from_project_code(name: str) -> None:
    cfg = micro(name, train__warmup_steps=1, train__log_every=3)
    engine = GanEngine(cfg, device="cpu")
    lq, gt = batch(cfg)
    with SyncCounter() as counter:
        for _ in range(3):  # warmup, GAN, GAN with grad norms (the step before a collection)
            engine.train_step(lq, gt)
        engine.train_step(lq, gt, grad_norms=True)
    assert counter.calls == []
    with SyncCounter() as counter:  # the counter does see a sync where there is one
        metrics = engine.pop_metrics()
    assert counter.calls and metrics["steps"] == 4 and "grad_norm_g" in metrics


def test_the_counter_cannot_see_a_read_inside_torch() -> None:
    """Why the meta-device test exists: indexing with a 0-d tensor reads it in C++, and the counter misses it."""
    vec = torch.tensor([0.5, float("nan"), 2.0])
    with SyncCounter() as counter:
        vec[torch.argmax(torch.isnan(vec).to(torch.int32))]
    assert counter.calls == []
    with pytest.raises(RuntimeError, match="meta"):  # the same read on the meta device raises
        vec.to("meta")[torch.argmax(torch.isnan(vec.to("meta")).to(torch.int32))]


def test_pop_metrics_means_equal_the_per_step_values() -> None:
    cfg = micro("ragan", train__warmup_steps=2, optim__milestones="1")
    per_step, interval = GanEngine(cfg, device="cpu"), GanEngine(cfg, device="cpu")
    rows = []
    for i in range(6):
        lq, gt = batch(cfg, seed=i)
        per_step.train_step(lq, gt, grad_norms=True)
        rows.append(per_step.pop_metrics())
        interval.train_step(lq, gt)  # collections after steps 2, 4 and 6: grad norms only before them
        if i == 1:
            warm = interval.pop_metrics()
    gan = interval.pop_metrics()
    assert warm["steps"] == 2 and gan["steps"] == 4 and gan["step"] == 5
    assert warm["loss_pixel"] == pytest.approx((rows[0]["loss_pixel"] + rows[1]["loss_pixel"]) / 2, rel=1e-12)
    for key in ("loss_pixel", "loss_adv_g", "loss_g", "loss_adv_raw", "loss_d_real", "loss_d_fake", "d_real", "d_fake",
                "d_gap"):
        assert gan[key] == pytest.approx(sum(r[key] for r in rows[2:]) / 4, rel=1e-12), key
    assert gan["lr_g"] == rows[5]["lr_g"] == cfg.optim.lr_g * cfg.optim.gamma  # the last step's lr
    assert "grad_norm_d" not in warm and gan["grad_norm_d"] == rows[5]["grad_norm_d"]
    assert per_step.pop_metrics() == {"steps": 0.0}


def test_grad_norm_is_the_norm_of_all_gradients() -> None:
    cfg = micro("v3", train__warmup_steps=0)
    engine = GanEngine(cfg, device="cpu")
    engine.generator_step(*batch(cfg))
    everything = torch.cat([p.grad.flatten() for p in engine.net_g.parameters()])
    norm = engine.pop_metrics()["grad_norm_g"]  # a float32 norm, exactly, in a Python float
    torch.testing.assert_close(torch.tensor(norm, dtype=torch.float32), everything.norm())


def test_pop_metrics_raises_on_a_nan_three_steps_earlier_and_names_it() -> None:
    cfg = micro("esrgan", train__warmup_steps=1, train__log_every=6)
    engine = GanEngine(cfg, device="cpu")
    lq, gt = batch(cfg)
    for _ in range(3):
        engine.train_step(lq, gt)
    g_good, ema_good = engine.net_g.state_dict(), engine.net_g_ema.state_dict()
    g_good = {k: v.clone() for k, v in g_good.items()}
    ema_good = {k: v.clone() for k, v in ema_good.items()}
    bad_gt = gt.clone()
    bad_gt[1, 0, 3, 3] = float("nan")
    engine.train_step(lq, bad_gt)  # step 3
    for _ in range(3):
        engine.train_step(lq, gt)  # steps 4-6 queue on; their updates are skipped on the device
    with pytest.raises(NonFiniteLoss, match=r"^generator step 3: loss_pixel is nan$"):
        engine.pop_metrics()
    # the weights (and the EMA) are those of the last good step
    assert all(torch.equal(v, g_good[k]) for k, v in engine.net_g.state_dict().items())
    assert all(torch.equal(v, ema_good[k]) for k, v in engine.net_g_ema.state_dict().items())


def test_reduce_makes_every_rank_raise_the_earliest_failure() -> None:
    """Two engines stand in for two ranks: `reduce` is the max over both (what an all-reduce MAX gives)."""
    cfg = micro("v2", train__warmup_steps=2)
    ranks = [GanEngine(cfg, device="cpu"), GanEngine(cfg, device="cpu")]
    lq, gt = batch(cfg)
    inf_lq = lq.clone()
    inf_lq[0, 1, 2, 2] = float("inf")
    for step in range(5):
        ranks[0].train_step(inf_lq if step == 4 else lq, gt)  # rank 0 fails in the GAN phase
        ranks[1].train_step(lq, gt * float("nan") if step == 1 else gt)  # rank 1 fails first, in the warmup
    keys = [r.record.bad_key.reshape(1).clone() for r in ranks]
    both = torch.maximum(*keys)
    messages = []
    for engine in ranks:
        with pytest.raises(NonFiniteLoss) as err:
            engine.pop_metrics(reduce=lambda key: torch.maximum(key, both))
        messages.append(str(err.value))
    assert messages == ["warmup step 1: loss_pixel is nan"] * 2
    healthy = GanEngine(cfg, device="cpu")
    healthy.train_step(lq, gt)
    assert healthy.pop_metrics(reduce=lambda key: key)["steps"] == 1


@pytest.mark.parametrize("name", ["v1", "v2"])  # naive and MATLAB degradation
def test_device_batch_stage_makes_no_synchronising_call(image_folder: Path, name: str) -> None:
    from srgan.batches import TrainingBatches, device_batch

    cfg = micro(name, data__batch_size=4)
    batches = TrainingBatches(cfg, [image_folder], device="cpu", start_step=0, num_steps=3)
    raw = list(batches.loader)  # the loader's own work (decoding, cropping on the CPU) is not the device's
    device_batch(*raw[0], scale=cfg.scale, degradation=cfg.data.degradation, device="cpu")  # matrices cached
    with SyncCounter() as counter:
        for pixels, peak, codes in raw[1:]:
            device_batch(pixels, peak, codes, scale=cfg.scale, degradation=cfg.data.degradation, device="cpu")
    assert counter.calls == []


def _ddp_nan_worker(rank: int, world: int, init_file: str, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)

    def max_over_ranks(t: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t

    cfg = micro("ragan", train__warmup_steps=1, train__log_every=4, generator__norm="none",
                discriminator__norm="none")
    engine = GanEngine(cfg, wrap=lambda net, role: DDP(net, broadcast_buffers=False))
    lq, gt = batch(cfg, seed=rank)
    message = "no error"
    for step in range(4):
        engine.train_step(lq * float("nan") if (rank, step) == (1, 2) else lq, gt)
    try:
        engine.pop_metrics(reduce=max_over_ranks)
    except NonFiniteLoss as err:
        message = str(err)
    Path(out, f"rank{rank}.txt").write_text(message)
    dist.destroy_process_group()


@pytest.mark.slow  # two processes with a gloo process group (~15 s)
def test_under_ddp_every_rank_raises_the_same_error(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.start_processes(_ddp_nan_worker, nprocs=2, join=True, start_method="spawn",
                       args=(2, str(tmp_path / "init"), str(tmp_path)))
    messages = [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)]
    assert messages == ["generator step 2: loss_pixel is nan"] * 2  # rank 0's data was fine
