"""The GAN step: `GanEngine.train_step` and its three phases, read top to bottom in one screen — warmup (pixel
loss only), generator (D frozen), discriminator — then the EMA. `GanEngine` holds the models and optimisers; the
bookkeeping (the interval's metrics, grad norms, learning rates and the non-finite record, all on the device) lives
in `srgan.step_record.StepRecord`, and every metric reaches a caller through `pop_metrics`.

What is guaranteed: `train_step` never reads a value from the device
-----------------------------------------------------------------------
For every preset, in both phases, with EMA on and with or without grad norms, `train_step` only queues kernels:
no `.item()`, `float()`, `bool()`, `.tolist()` or `.cpu()` on a tensor, and no torch call that reads a tensor
argument on the host inside its C++ (indexing with a 0-d tensor; a tensor weight to an op that takes a Scalar,
such as `torch._foreach_lerp_`). On a GPU the host runs ahead and the device never idles waiting for it. How it
is checked:
- tests/srgan/test_srgan_meta_device.py runs every preset's warmup, GAN and EMA steps, with a grad-norm step,
  on the `meta` device (tensors without data: any read of a value raises, in Python or in C++). It follows the
  code paths `meta` takes: foreach Adam (fused Adam is CUDA/CPU only), no autocast.
- on CUDA, the same steps run under `torch.cuda.set_sync_debug_mode("error")` (fused Adam, bf16 autocast; the
  test is skipped without a GPU; `python -m benchmarks.speed.gpu_check` runs it too).
- tests/srgan/test_srgan_no_sync.py counts the syncing tensor methods that project code calls on the CPU.
Not covered: `train.compile`'s first calls (compiling, and max-autotune benchmarking kernels, do synchronise).

Losses, D means and the non-finite check stay on the device; `pop_metrics` materialises them (one device-to-host
copy) at the steps where the loop needs numbers. The loop, on every rank (the call pattern the harness follows):

    for lq, gt in batches:                       # srgan.batches.TrainingBatches: float tensors on the device
        engine.train_step(lq, gt)                # queues one step; computes grad norms only before a collection
        done = engine.step                       # steps done so far
        if not engine.collects_after(done):      # log, validation or checkpoint step, or the last step
            continue
        metrics = engine.pop_metrics(reduce=max_over_ranks if distributed else None)  # may raise NonFiniteLoss
        phase = engine.phase_at(done - 1)        # the phase of the step just done ("warmup" or "gan")
        ...                                      # time limit, validation, checkpoint, report

- `pop_metrics()` returns floats: the interval's `steps`, `step` (index of its last step, 0-based), the means
  over the interval of every loss, of `loss_adv_raw` (the adversarial G loss before its weight), `d_real`/
  `d_fake` (mean sigmoid of D's logits) and `d_gap` (`srgan.losses.d_gap`: D_Ra's for a relativistic D), the
  last `lr_g`/`lr_d`, and `grad_norm_g`/`grad_norm_d` of the interval's last step when that step computed them
  (`train_step(..., grad_norms=True)`; the default `None` computes them exactly when `collects_after(step +
  1)`). Losses and D means are this rank's (under DDP G's and D's gradients, hence grad norms, are global).
  Check a time limit here too, not every step.
- Learning rates (`learning_rates`): a single-stage run's warmup is its pretraining and runs `train.pretrain_*`
  from step 0; the GAN phase runs `optim`'s schedule from its own first step.
- Non-finite losses: every step keeps, on the device, the earliest bad step, phase and loss. From that step on
  the optimisers skip their updates on the device (Adam's `found_inf`, as with a GradScaler) and the EMA stops,
  so the weights stay those of the last good step (BatchNorm running statistics are not weights: the bad
  step's forward may have updated them). `pop_metrics` raises `NonFiniteLoss("generator step 12: loss_pixel is
  nan")`. Under DDP pass `reduce`: a callable that returns the elementwise MAXIMUM over all ranks of the
  float64 tensor it is given (shape (1,), on the engine's device), for example

      def max_over_ranks(t):
          torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
          return t

  The tensor encodes (first bad step, phase, loss, kind of value) so that the maximum is the earliest bad step
  of any rank: every rank raises together with the same message. It is a collective: every rank must call
  `pop_metrics` at the same steps (`collects_after` is a function of the config alone).

DDP is the caller's business (see `harness/run/train.py`): pass `wrap` to wrap G and D, and `batch_mean` for the
relativistic loss's batch mean. The engine takes care of the parts that must be right under DDP:
- the G step runs D through its unwrapped module with requires_grad off, so no D gradients are computed and
  DDP's reducer for D is not involved (no wasted all-reduce, no "unfinished reduction" error);
- the D step runs real and fake through the wrapped D before one backward: one all-reduce;
- the perceptual network is frozen and never wrapped.

Per-step costs: Adam is fused (one kernel for all parameters) on CUDA and on the CPU too: there it measured 2x
(SRResNet) to 8x (tiny presets) faster than foreach Adam, and only fused Adam honours `found_inf`. The EMA is
three foreach kernels, grad norms one foreach norm and only before a collection. bf16 autocast follows
`optim.amp` (see `amp_enabled`); `train.compile` compiles G, D and the perceptual network (see `compile_mode`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import nn

from srgan.config import ExperimentConfig
from srgan.discriminator import build_discriminator
from srgan.generator import build_generator
from srgan.losses import (
    BatchMean,
    build_perceptual,
    pixel_loss,
    relativistic_d_losses,
    relativistic_g_loss,
    vanilla_d_losses,
    vanilla_g_loss,
)
from srgan.step_record import Metrics, NonFiniteLoss, Reduce, StepRecord, d_outputs, phase_metrics

__all__ = ["GanEngine", "NonFiniteLoss", "ema_update", "learning_rates", "unwrap"]

log = logging.getLogger(__name__)

# bf16 autocast measured faster than fp32 only from this per-device batch on (H100, issue 10: ESRGAN G+D at
# batch 16 ran 75 images/s in bf16 against 102 in fp32; at batch 64, 684 against 494). `python -m
# benchmarks.speed.throughput --compare --batch 16,32,64` prints both on a GPU to move this threshold.
AMP_MIN_BATCH = 64

def unwrap(net: nn.Module) -> nn.Module:
    """The module inside a DDP (or similar) wrapper."""
    return getattr(net, "module", net)


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


def lr_at(base: float, milestones: tuple[int, ...], gamma: float, steps_into_phase: int) -> float:
    """Step decay: `base * gamma ** (milestones passed)`; derived from the step, so it resumes exactly."""
    return base * gamma ** sum(steps_into_phase >= m for m in milestones)


def learning_rates(cfg: ExperimentConfig, step: int) -> tuple[float, float]:
    """(lr_g, lr_d) of the step with 0-based index `step`.

    The warmup of a single-stage run is its pretraining: `train.pretrain_lr` (0: `optim.lr_g`) with
    `train.pretrain_milestones`/`pretrain_gamma`, counted from step 0, as the same preset's separate pretraining
    stage runs it (a "pretrain" stage has that schedule in `optim` already: `srgan.versions.pretrain_stage`).
    The GAN phase runs `optim`'s schedule, counted from its first step. D does not train in the warmup: its lr
    there is `optim.lr_d`."""
    o, t = cfg.optim, cfg.train
    if step < t.warmup_steps:
        if t.stage == "single":
            return lr_at(t.pretrain_lr or o.lr_g, t.pretrain_milestones, t.pretrain_gamma, step), o.lr_d
        return lr_at(o.lr_g, o.milestones, o.gamma, step), o.lr_d
    into = step - t.warmup_steps
    return lr_at(o.lr_g, o.milestones, o.gamma, into), lr_at(o.lr_d, o.milestones, o.gamma, into)


def local_world_size() -> int:
    """The number of DDP ranks when a process group is up, else 1."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def amp_enabled(policy: str, device: torch.device, local_batch: int) -> bool:
    """bf16 autocast decision: never on the CPU; "bf16" always on CUDA; "auto" where it measured faster
    (a per-device batch of at least `AMP_MIN_BATCH`); "off" never."""
    if device.type != "cuda" or policy == "off":
        return False
    return policy == "bf16" or local_batch >= AMP_MIN_BATCH


def compile_mode(option: str) -> str | None:
    """torch.compile mode for `train.compile`. "max-autotune" autotunes kernels without CUDA graphs: the
    GAN step calls D several times per step and keeps their outputs alive across calls, and CUDA-graph
    trees (mode "reduce-overhead") failed that way on an H100 ("accessing tensor output of CUDAGraphs that
    has been overwritten"); running real and fake in one D call would change BatchNorm's batch statistics."""
    return {"default": None, "max-autotune": "max-autotune-no-cudagraphs"}[option]


def make_adam(params, *, lr: float, betas: tuple[float, float], device: torch.device) -> torch.optim.Adam:
    """Fused Adam on CUDA and the CPU: one kernel for all parameters, and it honours `found_inf` (a step
    with a non-finite loss leaves the weights and the moments untouched). Elsewhere foreach Adam."""
    fused = device.type in ("cuda", "cpu")
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=fused or None, foreach=None if fused else True)


@torch.no_grad()
def ema_update(net_ema: nn.Module, net: nn.Module, decay: float, *, frozen: torch.Tensor | None = None) -> None:
    """net_ema <- net_ema + (1 - decay) * (net - net_ema); buffers (BN statistics) are copied.

    `frozen`: a 0-d float tensor on the device; where it is 1 the parameters stay as they are. Its weight is a
    device tensor, so it goes through `_foreach_mul_`, which takes one (three foreach kernels), and not through
    `_foreach_lerp_`, which takes only a Scalar weight and would read the tensor on the host every step."""
    ema_params, params = list(net_ema.parameters()), [p.detach() for p in net.parameters()]
    if frozen is None:
        torch._foreach_lerp_(ema_params, params, 1 - decay)
    else:
        delta = torch._foreach_sub(params, ema_params)
        torch._foreach_mul_(delta, (1 - frozen) * (1 - decay))
        torch._foreach_add_(ema_params, delta)
    ema_buffers, buffers = list(net_ema.buffers()), list(net.buffers())
    if ema_buffers:
        torch._foreach_copy_(ema_buffers, buffers)


class GanEngine:
    """Models, optimisers and the step counter of one SRGAN-family run (see the module docstring)."""

    def __init__(self, cfg: ExperimentConfig, *, device: str | torch.device = "cpu",
                 wrap: Callable[[nn.Module, str], nn.Module] | None = None,
                 batch_mean: BatchMean = torch.mean) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.use_amp = amp_enabled(cfg.optim.amp, self.device, cfg.data.batch_size // local_world_size())
        self.batch_mean = batch_mean
        torch.manual_seed(cfg.train.seed)  # identical initial weights in every process
        net_g = build_generator(cfg.generator, scale=cfg.scale).to(self.device)
        net_d = build_discriminator(cfg.discriminator).to(self.device)
        if self.use_amp:
            net_g = net_g.to(memory_format=torch.channels_last)
            net_d = net_d.to(memory_format=torch.channels_last)
        self.net_g_ema = copy.deepcopy(net_g).eval() if cfg.optim.ema_decay > 0 else None
        if self.net_g_ema is not None:
            set_requires_grad(self.net_g_ema, False)
        self.perceptual = build_perceptual(cfg.loss)
        if self.perceptual is not None:
            self.perceptual = self.perceptual.to(self.device)
        if cfg.train.compile != "off":  # in place: state-dict keys and DDP wrapping are unchanged
            mode = compile_mode(cfg.train.compile)
            for net in (net_g, net_d, self.perceptual):
                if net is not None:
                    net.compile(mode=mode)
        wrap = wrap or (lambda net, _role: net)
        self.net_g = wrap(net_g, "generator")
        self.net_d = wrap(net_d, "discriminator")
        o = cfg.optim
        self.opt_g = make_adam(net_g.parameters(), lr=o.lr_g, betas=o.betas, device=self.device)
        self.opt_d = make_adam(net_d.parameters(), lr=o.lr_d, betas=o.betas, device=self.device)
        self.step = 0
        self._init_device_state()

    def _init_device_state(self) -> None:
        """The step record (sums, norms and non-finite record on the device); reset by `load_state_dict`."""
        self.record = StepRecord(phase_metrics(self.cfg), step=self.step, device=self.device)
        for opt in (self.opt_g, self.opt_d):
            if any(g.get("fused") for g in opt.param_groups):
                opt.found_inf = self.record.found_inf  # read by fused Adam, as a GradScaler sets it

    # ------------------------------------------------------------------------------------------ phases

    def phase_at(self, step: int) -> str:
        """The phase of the step with 0-based index `step`: "warmup" or "gan"."""
        return "warmup" if step < self.cfg.train.warmup_steps else "gan"

    @property
    def phase(self) -> str:
        """The phase of the next step."""
        return self.phase_at(self.step)

    @property
    def total_steps(self) -> int:
        return self.cfg.train.total_steps

    def collects_after(self, steps_done: int) -> bool:
        """Whether the loop collects metrics (log, validation or checkpoint) once `steps_done` steps are done."""
        t = self.cfg.train
        return (steps_done % t.log_every == 0 or steps_done % t.val_every == 0 or steps_done % t.ckpt_every == 0
                or steps_done >= self.total_steps)

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.use_amp else nullcontext()

    def _prepare(self, img: torch.Tensor) -> torch.Tensor:
        img = img.to(self.device, non_blocking=True)
        return img.contiguous(memory_format=torch.channels_last) if self.use_amp else img

    def _start_step(self) -> None:
        """Set this step's learning rates (derived from the step: a resume continues them exactly)."""
        lr_g, lr_d = learning_rates(self.cfg, self.step)
        self.record.start_step(lr_g, lr_d)
        for opt, lr in ((self.opt_g, lr_g), (self.opt_d, lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr

    def _grad_norm(self, net: nn.Module) -> torch.Tensor:
        """The 2-norm of all of `net`'s gradients: one foreach norm, then the norm of those (the same kernels
        on every device; `torch.nn.utils.get_total_norm` refuses foreach on the meta device)."""
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.device)
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)))

    def _update(self, opt: torch.optim.Optimizer, loss: torch.Tensor, net: nn.Module, norm: str | None) -> None:
        """Backward and one optimiser step (skipped on the device after a non-finite loss: `found_inf`);
        `norm`: keep the gradient norm under that name for `pop_metrics`."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if norm:
            self.record.norms[norm] = self._grad_norm(net)
        opt.step()

    # -------------------------------------------------------------------------------------- the step

    def train_step(self, lq: torch.Tensor, gt: torch.Tensor, *, grad_norms: bool | None = None) -> None:
        """Queue one optimisation step of the current phase; nothing waits on the host.

        `grad_norms`: compute G's (and D's) gradient norm in this step, for `pop_metrics`; `None` does it
        exactly before a collection (`collects_after(step + 1)`)."""
        if grad_norms is None:
            grad_norms = self.collects_after(self.step + 1)
        lq, gt = self._prepare(lq), self._prepare(gt)
        self._start_step()
        if self.phase == "warmup":
            self.warmup_step(lq, gt, grad_norms=grad_norms)
        else:
            sr = self.generator_step(lq, gt, grad_norms=grad_norms)
            self.discriminator_step(gt, sr, grad_norms=grad_norms)
        if self.net_g_ema is not None:  # frozen after a non-finite step: the EMA keeps the last good weights
            ema_update(self.net_g_ema, unwrap(self.net_g), self.cfg.optim.ema_decay, frozen=self.record.found_inf)
        self.record.end_step(self.step)
        self.step += 1

    def warmup_step(self, lq: torch.Tensor, gt: torch.Tensor, *, grad_norms: bool = True) -> None:
        """Pixel loss only: a stable reconstruction to start the GAN from."""
        self.net_g.train()
        with self._autocast():
            sr = self.net_g(lq)  # (B, 3, h*s, w*s)
        loss_pixel = pixel_loss(sr.float(), gt, self.cfg.loss.pixel_type)
        self.record.add("warmup", {"loss_pixel": loss_pixel})
        self._update(self.opt_g, loss_pixel, self.net_g, "grad_norm_g" if grad_norms else None)

    def generator_step(self, lq: torch.Tensor, gt: torch.Tensor, *, grad_norms: bool = True) -> torch.Tensor:
        """Weighted pixel + perceptual + adversarial loss; D frozen and run unwrapped (no D gradients, no DDP
        reduction for D). Returns SR, detached, for the D step."""
        w, net_d = self.cfg.loss, unwrap(self.net_d)
        set_requires_grad(net_d, False)
        try:
            self.net_g.train()
            net_d.train()
            with self._autocast():
                sr = self.net_g(lq)  # (B, 3, h*s, w*s)
                fake_logits = net_d(sr).float()
                real_logits = net_d(gt).float() if w.adv_type == "relativistic" else None
            sr = sr.float()
            losses = {"loss_pixel": w.pixel_weight * pixel_loss(sr, gt, w.pixel_type)}
            if self.perceptual is not None:
                losses["loss_perceptual"] = w.perceptual_weight * self.perceptual(sr, gt)
            if w.adv_type == "relativistic":
                adv = relativistic_g_loss(real_logits, fake_logits, self.batch_mean)
            else:
                adv = vanilla_g_loss(fake_logits)
            losses["loss_adv_g"] = w.adv_weight * adv
            losses["loss_g"] = loss_g = sum(losses.values())
            self.record.add("generator", {**losses, "loss_adv_raw": adv})
            self._update(self.opt_g, loss_g, self.net_g, "grad_norm_g" if grad_norms else None)
        finally:
            set_requires_grad(net_d, True)
        return sr.detach()

    def discriminator_step(self, gt: torch.Tensor, sr: torch.Tensor, *, grad_norms: bool = True) -> None:
        """Real and fake through the (wrapped) D, one backward: one all-reduce under DDP."""
        relativistic = self.cfg.loss.adv_type == "relativistic"
        self.net_d.train()
        with self._autocast():
            real_logits = self.net_d(gt).float()
            fake_logits = self.net_d(sr.detach()).float()
        if relativistic:
            loss_d_real, loss_d_fake = relativistic_d_losses(real_logits, fake_logits, self.batch_mean)
        else:
            loss_d_real, loss_d_fake = vanilla_d_losses(real_logits, fake_logits)
        d_means = d_outputs(real_logits, fake_logits, relativistic=relativistic, batch_mean=self.batch_mean)
        self.record.add("discriminator", {"loss_d_real": loss_d_real, "loss_d_fake": loss_d_fake, **d_means})
        self._update(self.opt_d, loss_d_real + loss_d_fake, self.net_d, "grad_norm_d" if grad_norms else None)

    # ------------------------------------------------------------------------------------ collection

    def pop_metrics(self, *, reduce: Reduce | None = None) -> Metrics:
        """Materialise everything since the last call (one device-to-host copy) and start a new interval.

        Raises `NonFiniteLoss` naming the first bad step, phase and loss (of any rank, with `reduce`; see the
        module docstring for what `reduce` must do)."""
        return self.record.pop(reduce=reduce)

    # -------------------------------------------------------------------------------------- inference

    def inference_generator(self) -> nn.Module:
        """The generator to evaluate and export: the EMA copy when EMA is on."""
        return self.net_g_ema if self.net_g_ema is not None else unwrap(self.net_g)

    # --------------------------------------------------------------------------------------- state

    def state_dict(self) -> dict:
        state = {
            "step": self.step,
            "net_g": unwrap(self.net_g).state_dict(),
            "net_d": unwrap(self.net_d).state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng_cpu": torch.get_rng_state(),
        }
        if self.net_g_ema is not None:
            state["net_g_ema"] = self.net_g_ema.state_dict()
        if torch.cuda.is_available() and self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict) -> None:
        unwrap(self.net_g).load_state_dict(state["net_g"])
        unwrap(self.net_d).load_state_dict(state["net_d"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if self.net_g_ema is not None:
            self.net_g_ema.load_state_dict(state["net_g_ema"])
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        self.step = int(state["step"])
        self._init_device_state()
