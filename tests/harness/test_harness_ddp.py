"""DDP correctness: a 2-worker Ray Train run equals one process on the same global batch; the relativistic
loss's batch mean is global by decision (and per-rank means would differ); fault tolerance."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from harness_helpers import DumpWeights, KillAt, reference_run, tiny_config, with_hook
from safetensors.torch import load_file

from harness.run.runs import RunSpec, prepare_run
from harness.run.train import fit
from harness.run.worker import read_history

pytestmark = pytest.mark.slow


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_two_worker_ddp_matches_single_process(local_ray, data_root: Path, tmp_path: Path) -> None:
    # warmup then GAN steps, vanilla loss, no BatchNorm: DDP must be exactly data-parallel SGD
    cfg = tiny_config(data_root, steps=(3, 3), **{"loss.adv_type": "vanilla"})
    spec = prepare_run(RunSpec(cfg=cfg, run_dir=tmp_path / "ddp", data_root=data_root, workers=2))
    dump = tmp_path / "dump"
    dump.mkdir()
    result = fit(spec, loop=with_hook(DumpWeights(dump)))
    assert result.error is None
    rank0 = load_file(str(dump / "generator_rank0.safetensors"))
    rank1 = load_file(str(dump / "generator_rank1.safetensors"))
    assert _max_diff(rank0, rank1) == 0.0  # both ranks hold identical weights
    reference, _ = reference_run(cfg, data_root)
    assert _max_diff(rank0, reference) < 1e-5
    # and training really moved the weights (the comparison is not between two untouched inits)
    init, _ = reference_run(cfg, data_root, steps=0)
    assert _max_diff(reference, init) > 1e-4  # 6 Adam steps at lr 1e-4: well above the 1e-5 tolerance
    config = json.loads((spec.run_dir / "config.json").read_text())
    assert config["ddp"]["batchnorm"] == "per-rank batch statistics"
    assert config["ddp"]["relativistic_mean"] == "global"


def _ddp_training_worker(rank: int, world: int, init_file: str, cfg_dict: dict, data_root: str, mean: str,
                         out: str) -> None:
    import torch.distributed as dist

    from harness.run.storage import resolve_train_dirs
    from harness.run.worker import ddp_wrapper, global_batch_mean
    from srgan.config import ExperimentConfig, from_dict
    from srgan.data import PatchDataset, make_loader
    from srgan.engine import GanEngine, unwrap
    from srgan.holdout import training_exclusions

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    cfg = from_dict(ExperimentConfig, cfg_dict)
    engine = GanEngine(cfg, wrap=ddp_wrapper(torch.device("cpu"), sync_bn=False),
                       batch_mean=global_batch_mean if mean == "global" else torch.mean)
    folders = resolve_train_dirs(cfg, data_root)
    dataset = PatchDataset(folders, scale=cfg.scale, patch_size=cfg.data.patch_size, seed=cfg.train.seed,
                           exclude=training_exclusions(cfg, folders, data_root))
    history = []
    for lq, gt in make_loader(dataset, global_batch=cfg.data.batch_size, start_step=0,
                              num_steps=engine.total_steps, rank=rank, world=world):
        engine.train_step(lq, gt, grad_norms=True)
        history.append(engine.pop_metrics())
    torch.save({"net_g": unwrap(engine.net_g).state_dict(), "net_d": unwrap(engine.net_d).state_dict(),
                "history": history}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_relativistic_global_mean_training_matches_single_process(data_root: Path, tmp_path: Path) -> None:
    """With the global (all-reduced) batch mean, 2 DDP ranks train exactly like one process."""
    from srgan.config import to_dict

    cfg = tiny_config(data_root, steps=(1, 3), **{"loss.adv_type": "relativistic", "loss.adv_weight": 1.0,
                                                  "loss.pixel_weight": 1e-2})
    mp.start_processes(_ddp_training_worker, nprocs=2, join=True, start_method="spawn",
                       args=(2, str(tmp_path / "init"), to_dict(cfg), str(data_root), "global", str(tmp_path)))
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert _max_diff(rank0["net_g"], rank1["net_g"]) == 0.0
    reference, ref_history = reference_run(cfg, data_root)
    # Each rank's loss is a mean over its half of the batch, so the two ranks' average is the global loss.
    gaps = []
    for step, ref in enumerate(ref_history):
        for key in ("loss_adv_g", "loss_d_real", "loss_d_fake"):
            if key in ref:
                ddp = (rank0["history"][step][key] + rank1["history"][step][key]) / 2
                gaps.append(abs(ddp - ref[key]) / abs(ref[key]))
    assert len(gaps) == 9
    assert max(gaps) < 1e-5
    assert _max_diff(rank0["net_g"], reference) < 1e-5


def test_batchnorm_statistics_are_per_rank(data_root: Path, tmp_path: Path) -> None:
    """The recorded BN decision: batch statistics are per rank. D's running statistics stay each rank's own
    (broadcast_buffers=False); G's are overwritten by rank 0's at the start of every forward (so they differ
    only by the last forward's update, and rank 0's are the ones checkpointed); all weights agree."""
    from srgan.config import to_dict

    cfg = tiny_config(data_root, steps=(1, 2), **{"generator.norm": "batch", "discriminator.norm": "batch"})
    mp.start_processes(_ddp_training_worker, nprocs=2, join=True, start_method="spawn",
                       args=(2, str(tmp_path / "init"), to_dict(cfg), str(data_root), "global", str(tmp_path)))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for net in ("net_g", "net_d"):
        a, b = ranks[0][net], ranks[1][net]
        weights = [k for k in a if k.endswith(("weight", "bias"))]
        stats = [k for k in a if k.endswith("running_mean")]
        assert weights and stats
        assert all(torch.equal(a[k], b[k]) for k in weights), net
        assert any(not torch.equal(a[k], b[k]) for k in stats), net  # each rank saw only its half of the batch


# Logits of a batch of 4, split 2 + 2 over the ranks; deliberately different halves, so that per-rank and
# global means differ (at initialisation a tiny D gives almost equal logits and hides the difference).
REAL = [2.0, 1.5, -0.5, 0.25]
FAKE = [-1.0, 0.5, 1.0, -2.0]


def _relativistic_loss_worker(rank: int, world: int, init_file: str, mean: str, out: str) -> None:
    import torch.distributed as dist

    from harness.run.worker import global_batch_mean
    from srgan.losses import relativistic_d_losses, relativistic_g_loss

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    half = slice(2 * rank, 2 * rank + 2)
    real = torch.tensor(REAL[half], requires_grad=True)
    fake = torch.tensor(FAKE[half], requires_grad=True)
    batch_mean = global_batch_mean if mean == "global" else torch.mean
    loss_g = relativistic_g_loss(real, fake, batch_mean)
    loss_d = sum(relativistic_d_losses(real, fake, batch_mean))
    (loss_g + loss_d).backward()
    torch.save({"loss_g": loss_g.detach(), "loss_d": loss_d.detach(), "grad_real": real.grad,
                "grad_fake": fake.grad}, f"{out}/loss{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.parametrize("mean", ["global", "local"])
def test_relativistic_batch_mean_choice(mean: str, tmp_path: Path) -> None:
    """The decision, tested at the loss: all-reduced means give the single-process loss and gradients on the
    global batch; per-rank means give a different loss."""
    from srgan.losses import relativistic_d_losses, relativistic_g_loss

    mp.start_processes(_relativistic_loss_worker, nprocs=2, join=True, start_method="spawn",
                       args=(2, str(tmp_path / "init"), mean, str(tmp_path)))
    ranks = [torch.load(tmp_path / f"loss{r}.pt", weights_only=True) for r in range(2)]
    real = torch.tensor(REAL, requires_grad=True)
    fake = torch.tensor(FAKE, requires_grad=True)
    loss_g = relativistic_g_loss(real, fake)
    loss_d = sum(relativistic_d_losses(real, fake))
    (loss_g + loss_d).backward()
    ddp_loss_g = (ranks[0]["loss_g"] + ranks[1]["loss_g"]) / 2
    ddp_loss_d = (ranks[0]["loss_d"] + ranks[1]["loss_d"]) / 2
    if mean == "global":
        assert float(ddp_loss_g) == pytest.approx(float(loss_g), rel=1e-6)
        assert float(ddp_loss_d) == pytest.approx(float(loss_d), rel=1e-6)
        # Rank r's backward gives d(L_0 + L_1)/d(its logits) (the all-reduce carries the other rank's
        # dependence on the mean back); DDP's average over ranks then makes 1/W of it: the global gradient.
        for key, ref in (("grad_real", real.grad), ("grad_fake", fake.grad)):
            ddp_grad = torch.cat([ranks[0][key], ranks[1][key]]) / 2
            assert torch.allclose(ddp_grad, ref, atol=1e-6), (key, ddp_grad, ref)
    else:
        assert abs(float(ddp_loss_g) - float(loss_g)) > 1e-2


def test_worker_failure_resumes_from_checkpoint(local_ray, data_root: Path, tmp_path: Path) -> None:
    """A worker killed at step 5 (checkpoint at 4) resumes and ends exactly as an uninterrupted run."""
    cfg = tiny_config(data_root, steps=(3, 5))
    cfg = cfg.__class__(**{**cfg.__dict__, "train": cfg.train.__class__(
        **{**cfg.train.__dict__, "ckpt_every": 4, "val_every": 8})})
    spec = prepare_run(RunSpec(cfg=cfg, run_dir=tmp_path / "ft", data_root=data_root, workers=1, max_failures=1))
    result = fit(spec, loop=with_hook(KillAt(5, spec.run_dir / "injected_failure.done")))
    assert result.error is None
    assert (spec.run_dir / "injected_failure.done").exists(), "the failure was not injected"
    history = read_history(spec.run_dir)
    steps = [row["step"] for row in history]
    assert steps == list(range(1, 9))  # no step lost or repeated after the restart
    _, reference = reference_run(cfg, data_root)
    for key in ("loss_pixel", "loss_g", "loss_d_real", "loss_d_fake", "d_real", "d_fake"):
        assert history[-1][key] == pytest.approx(reference[-1][key], rel=1e-6, abs=1e-9), key
    final = load_file(str(Path(result.checkpoint.path) / "generator.safetensors"))
    ref_state, _ = reference_run(cfg, data_root)
    assert max(float((final[k] - ref_state[k]).abs().max()) for k in final) < 1e-6
    assert os.environ.get("RAY_ADDRESS") is None
