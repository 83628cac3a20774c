"""The GAN step, one readable function per phase: warmup (pixel only), generator (D frozen), discriminator,
EMA update. `GanEngine` holds the models and optimisers and dispatches on the step's phase.

A step never waits on the host
------------------------------
`train_step` calls no `.item()`, `float()`, `bool()`, `.tolist()` or `.numpy()` on a tensor: on a GPU the host
only queues kernels and runs ahead of the device. Losses, D(real)/D(fake) means and the non-finite check stay
on the device; `pop_metrics` materialises them (one device-to-host copy) at the steps where the loop needs
numbers. The loop, on every rank (the call pattern the harness must follow):

    for lq, gt in batches:                       # srgan.batches.training_batches: float tensors on the device
        engine.train_step(lq, gt)                # queues one step; computes grad norms only before a collection
        done = engine.step                       # steps done so far
        if not engine.collects_after(done):      # log, validation or checkpoint step, or the last step
            continue
        metrics = engine.pop_metrics(reduce=max_over_ranks if distributed else None)  # may raise NonFiniteLoss
        phase = engine.phase_at(done - 1)        # the phase of the step just done ("warmup" or "gan")
        ...                                      # time limit, validation, checkpoint, report

- `pop_metrics()` returns floats: the interval's `steps`, `step` (index of its last step, 0-based), the means
  over the interval of every loss and of `d_real`/`d_fake`, the last `lr_g`/`lr_d`, and `grad_norm_g`/
  `grad_norm_d` of the interval's last step when that step computed them (`train_step(..., grad_norms=True)`;
  the default `None` computes them exactly when `collects_after(step + 1)`). Losses and D means are this
  rank's (under DDP G's and D's gradients, hence grad norms, are global). Check a time limit here too, not
  every step.
- Non-finite losses: each check keeps a device-side record of the first bad step, phase and loss. From that
  step on, the optimisers skip their updates on the device (Adam's `found_inf`, as with a GradScaler) and the
  EMA stops, so the weights stay those of the last good step (BatchNorm running statistics are not weights:
  the bad step's forward may have updated them). `pop_metrics` raises `NonFiniteLoss("generator
  step 12: loss_pixel is nan")`. Under DDP pass `reduce`: a callable that returns the elementwise MAXIMUM over
  all ranks of the float64 tensor it is given (shape (1,), on the engine's device), for example

      def max_over_ranks(t):
          torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
          return t

  The tensor encodes (first bad step, phase, loss, kind of value) so that the maximum is the earliest bad step
  of any rank: every rank raises together with the same message. It is a collective: every rank must call
  `pop_metrics` at the same steps (`collects_after` is a function of the config alone).

DDP is the caller's business (see `harness/train.py`): pass `wrap` to wrap G and D, and `batch_mean` for the
relativistic loss's batch mean. The engine takes care of the parts that must be right under DDP:
- the G step runs D through its unwrapped module with requires_grad off, so no D gradients are computed and
  DDP's reducer for D is not involved (no wasted all-reduce, no "unfinished reduction" error);
- the D step runs real and fake through the wrapped D before one backward: one all-reduce;
- the perceptual network is frozen and never wrapped.

Per-step costs: Adam is fused (one kernel for all parameters) on CUDA and on the CPU too: there it measured 2x
(SRResNet) to 8x (tiny presets) faster than foreach Adam, and only fused Adam honours `found_inf`. The EMA is
one foreach lerp, grad norms are one foreach norm and only before a collection. bf16 autocast follows `optim.amp` (see
`amp_enabled`); `train.compile` compiles G, D and the perceptual network (see `compile_mode`).
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

log = logging.getLogger(__name__)

Metrics = dict[str, float]
Reduce = Callable[[torch.Tensor], torch.Tensor]

# bf16 autocast measured faster than fp32 only from this per-device batch on (H100, issue 10: ESRGAN G+D at
# batch 16 ran 75 images/s in bf16 against 102 in fp32; at batch 64, 684 against 494). `python -m
# benchmarks.throughput --compare --batch 16,32,64` prints both on a GPU to move this threshold.
AMP_MIN_BATCH = 64

# The non-finite record: phases and loss names are encoded as small integers (see `_encode`).
PHASES = ("warmup", "generator", "discriminator")
LOSS_NAMES = ("loss_pixel", "loss_perceptual", "loss_adv_g", "loss_g", "loss_d_real", "loss_d_fake")
_VALUE_KINDS = (float("nan"), float("inf"), float("-inf"))
_MAX_STEP = 2**36  # keys stay below 2**44: exact in float64


class NonFiniteLoss(FloatingPointError):
    """A loss became NaN or infinite; the message names the step, phase and loss."""


def unwrap(net: nn.Module) -> nn.Module:
    """The module inside a DDP (or similar) wrapper."""
    return getattr(net, "module", net)


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


def lr_at(base: float, milestones: tuple[int, ...], gamma: float, steps_into_phase: int) -> float:
    """Step decay: `base * gamma ** (milestones passed)`; derived from the step, so it resumes exactly."""
    return base * gamma ** sum(steps_into_phase >= m for m in milestones)


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
    """net_ema <- decay * net_ema + (1 - decay) * net, one foreach lerp; buffers (BN statistics) are copied.
    `frozen`: a 0-d float tensor on the device; where it is 1 the parameters are left as they are (no host
    sync to decide it)."""
    ema_params, params = list(net_ema.parameters()), [p.detach() for p in net.parameters()]
    weight = 1 - decay if frozen is None else (1 - decay) * (1 - frozen)
    torch._foreach_lerp_(ema_params, params, weight)
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
        """Accumulators and the non-finite record, all on the device (reset by `load_state_dict`)."""
        dev = self.device
        self._step_t = torch.full((), float(self.step), dtype=torch.float64, device=dev)
        self._bad_key = torch.zeros((), dtype=torch.float64, device=dev)  # 0: all finite (see `_encode`)
        self._found_inf = torch.zeros((), dtype=torch.float32, device=dev)  # Adam's skip flag
        for opt in (self.opt_g, self.opt_d):
            if any(g.get("fused") for g in opt.param_groups):
                opt.found_inf = self._found_inf  # read by fused Adam, as a GradScaler sets it
        self._sums: dict[str, torch.Tensor] = {}  # interval sums, per group of metrics
        self._counts: dict[str, int] = {}
        self._names: dict[str, tuple[str, ...]] = {}
        self._norms: dict[str, torch.Tensor] = {}
        self._interval_last: int | None = None
        self._lrs: dict[str, float] = {}
        self._codes: dict[tuple[str, tuple[str, ...]], torch.Tensor] = {}  # (phase, loss names) -> their codes

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
        return self.cfg.train.warmup_steps + self.cfg.train.gan_steps

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

    def _set_lrs(self) -> None:
        o, t = self.cfg.optim, self.cfg.train
        into = self.step if self.phase == "warmup" else self.step - t.warmup_steps
        self._lrs = {"lr_g": lr_at(o.lr_g, o.milestones, o.gamma, into),
                     "lr_d": lr_at(o.lr_d, o.milestones, o.gamma, into)}
        for group in self.opt_g.param_groups:
            group["lr"] = self._lrs["lr_g"]
        for group in self.opt_d.param_groups:
            group["lr"] = self._lrs["lr_d"]

    # ---------------------------------------------------------------------- device-side bookkeeping

    def _record(self, phase: str, names: tuple[str, ...], values: list[torch.Tensor], *, checked: int) -> None:
        """Add this step's values to the interval sums; check the first `checked` of them for non-finite
        values and keep the earliest bad one in `_bad_key` (all on the device)."""
        vec = torch.stack([v.detach().to(torch.float64) for v in values])  # (n,)
        group = f"{phase}:{','.join(names)}"
        if group in self._sums:
            self._sums[group] += vec
        else:
            self._sums[group], self._names[group] = vec.clone(), names
        self._counts[group] = self._counts.get(group, 0) + 1
        checked_vec = vec[:checked]
        bad = ~torch.isfinite(checked_vec)
        first = torch.argmax(bad.to(torch.int32))  # the first bad value's index (0 when none is bad)
        value = checked_vec[first]
        kind = torch.where(torch.isnan(value), 0.0, torch.where(value > 0, 1.0, 2.0))
        code = self._loss_codes(phase, names[:checked])[first]
        key = ((_MAX_STEP - self._step_t) * 64 + (63 - code)) * 4 + kind + 1  # larger: earlier step, phase, loss
        torch.maximum(self._bad_key, torch.where(bad.any(), key, 0.0), out=self._bad_key)  # earliest step wins
        self._found_inf.copy_(self._bad_key > 0)

    def _loss_codes(self, phase: str, names: tuple[str, ...]) -> torch.Tensor:
        """The codes of `names` in `phase` as a device tensor, made once (the first step of each phase)."""
        if (phase, names) not in self._codes:
            codes = [PHASES.index(phase) * 16 + LOSS_NAMES.index(n) for n in names]
            self._codes[phase, names] = torch.tensor(codes, dtype=torch.float64, device=self.device)
        return self._codes[phase, names]

    @staticmethod
    def _decode(key: float) -> str:
        k = int(key) - 1
        kind, k = k % 4, k // 4
        code, k = 63 - k % 64, k // 64
        step = _MAX_STEP - k
        phase, loss = PHASES[code // 16], LOSS_NAMES[code % 16]
        return f"{phase} step {step}: {loss} is {_VALUE_KINDS[kind]}"

    def _grad_norm(self, net: nn.Module) -> torch.Tensor:
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.device)
        return torch.nn.utils.get_total_norm(grads, norm_type=2.0, foreach=True)

    # -------------------------------------------------------------------------------------- the step

    def train_step(self, lq: torch.Tensor, gt: torch.Tensor, *, grad_norms: bool | None = None) -> None:
        """Queue one optimisation step of the current phase; nothing waits on the host.

        `grad_norms`: compute G's (and D's) gradient norm in this step, for `pop_metrics`; `None` does it
        exactly before a collection (`collects_after(step + 1)`)."""
        if grad_norms is None:
            grad_norms = self.collects_after(self.step + 1)
        self._norms = {}
        lq, gt = self._prepare(lq), self._prepare(gt)
        self._set_lrs()
        if self.phase == "warmup":
            self.warmup_step(lq, gt, grad_norms=grad_norms)
        else:
            _, sr = self.generator_step(lq, gt, grad_norms=grad_norms)
            self.discriminator_step(gt, sr, grad_norms=grad_norms)
        if self.net_g_ema is not None:
            # frozen after a non-finite step: the EMA keeps the last good weights
            ema_update(self.net_g_ema, unwrap(self.net_g), self.cfg.optim.ema_decay, frozen=self._found_inf)
        self._interval_last = self.step
        self.step += 1
        self._step_t += 1

    def warmup_step(self, lq: torch.Tensor, gt: torch.Tensor, *, grad_norms: bool = True) -> dict[str, torch.Tensor]:
        """Pixel loss only: a stable reconstruction to start the GAN from."""
        self.net_g.train()
        with self._autocast():
            sr = self.net_g(lq)  # (B, 3, h*s, w*s)
        loss_pixel = pixel_loss(sr.float(), gt, self.cfg.loss.pixel_type)
        self._record("warmup", ("loss_pixel",), [loss_pixel], checked=1)
        self.opt_g.zero_grad(set_to_none=True)
        loss_pixel.backward()
        if grad_norms:
            self._norms["grad_norm_g"] = self._grad_norm(self.net_g)
        self.opt_g.step()
        return {"loss_pixel": loss_pixel.detach(), **self._norms}

    def generator_step(self, lq: torch.Tensor, gt: torch.Tensor, *, grad_norms: bool = True
                       ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Weighted pixel + perceptual + adversarial loss; D is frozen and used unwrapped (see module doc)."""
        w = self.cfg.loss
        net_d = unwrap(self.net_d)
        set_requires_grad(net_d, False)
        try:
            self.net_g.train()
            net_d.train()
            with self._autocast():
                sr = self.net_g(lq)
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
            self._record("generator", tuple(losses), list(losses.values()), checked=len(losses))
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            if grad_norms:
                self._norms["grad_norm_g"] = self._grad_norm(self.net_g)
            self.opt_g.step()
        finally:
            set_requires_grad(net_d, True)
        out = {k: v.detach() for k, v in losses.items()}
        if "grad_norm_g" in self._norms:
            out["grad_norm_g"] = self._norms["grad_norm_g"]
        return out, sr.detach()

    def discriminator_step(self, gt: torch.Tensor, sr: torch.Tensor, *, grad_norms: bool = True
                           ) -> dict[str, torch.Tensor]:
        """Real and fake through the (wrapped) D, one backward. `sr` is the G step's output, detached."""
        self.net_d.train()
        with self._autocast():
            real_logits = self.net_d(gt).float()
            fake_logits = self.net_d(sr.detach()).float()
        if self.cfg.loss.adv_type == "relativistic":
            loss_d_real, loss_d_fake = relativistic_d_losses(real_logits, fake_logits, self.batch_mean)
        else:
            loss_d_real, loss_d_fake = vanilla_d_losses(real_logits, fake_logits)
        with torch.no_grad():
            d_real, d_fake = torch.sigmoid(real_logits).mean(), torch.sigmoid(fake_logits).mean()
        self._record("discriminator", ("loss_d_real", "loss_d_fake", "d_real", "d_fake"),
                     [loss_d_real, loss_d_fake, d_real, d_fake], checked=2)
        self.opt_d.zero_grad(set_to_none=True)
        (loss_d_real + loss_d_fake).backward()
        if grad_norms:
            self._norms["grad_norm_d"] = self._grad_norm(self.net_d)
        self.opt_d.step()
        out = {"loss_d_real": loss_d_real.detach(), "loss_d_fake": loss_d_fake.detach(), "d_real": d_real,
               "d_fake": d_fake}
        if "grad_norm_d" in self._norms:
            out["grad_norm_d"] = self._norms["grad_norm_d"]
        return out

    # ------------------------------------------------------------------------------------ collection

    def pop_metrics(self, *, reduce: Reduce | None = None) -> Metrics:
        """Materialise everything since the last call (one device-to-host copy) and start a new interval.

        Raises `NonFiniteLoss` naming the first bad step, phase and loss (of any rank, with `reduce`; see the
        module docstring for what `reduce` must do)."""
        key = self._bad_key.reshape(1).clone()
        if reduce is not None:
            key = reduce(key)
        groups = list(self._sums)
        norm_names = list(self._norms)
        parts = [key] + [self._sums[g] for g in groups] + [self._norms[n].detach().reshape(1).double()
                                                           for n in norm_names]
        flat = torch.cat([p.to(torch.float64) for p in parts]).cpu().tolist()  # the one host sync
        if flat[0] > 0:
            raise NonFiniteLoss(self._decode(flat[0]))
        out: Metrics = {}
        totals: dict[str, list[float]] = {}
        i = 1
        for g in groups:
            n, names = self._counts[g], self._names[g]
            for name, value in zip(names, flat[i : i + len(names)], strict=True):
                acc = totals.setdefault(name, [0.0, 0])
                acc[0] += value
                acc[1] += n
            i += len(names)
        for name, (total, n) in totals.items():
            out[name] = total / n
        for name, value in zip(norm_names, flat[i:], strict=True):
            out[name] = value
        steps = sum(self._counts[g] for g in groups if g.startswith(("warmup:", "generator:")))
        out["steps"] = float(steps)
        if steps:
            out.update(step=float(self._interval_last), **self._lrs)
        self._sums, self._counts, self._names, self._norms = {}, {}, {}, {}
        return out

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
