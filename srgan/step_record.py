"""The GAN step's bookkeeping, kept on the device between collections: the interval's metric sums, the grad norms
and learning rates of its last step, and the earliest non-finite loss (`StepRecord`). `srgan.engine` adds to it
once per phase; `StepRecord.pop` materialises it in one device-to-host copy at the steps where the loop needs
numbers (the one metric channel: every metric a caller reads comes from `pop`)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from srgan.config import ExperimentConfig
from srgan.losses import BatchMean, d_gap, relative_logits

Metrics = dict[str, float]
Reduce = Callable[[torch.Tensor], torch.Tensor]

# The non-finite record names a phase and a loss by their index here (see `StepRecord`).
PHASES = ("warmup", "generator", "discriminator")
LOSS_NAMES = ("loss_pixel", "loss_perceptual", "loss_adv_g", "loss_g", "loss_d_real", "loss_d_fake")
_VALUE_KINDS = (float("nan"), float("inf"), float("-inf"))
_MAX_STEP = 2**36  # keys stay below 2**44: exact in float64


class NonFiniteLoss(FloatingPointError):
    """A loss became NaN or infinite; the message names the step, phase and loss."""


def phase_metrics(cfg: ExperimentConfig) -> dict[str, tuple[str, ...]]:
    """The metrics each phase of a step records, in order. The losses among them (`LOSS_NAMES`) come first and
    are checked for non-finite values; `loss_adv_raw` (the unweighted adversarial loss) and D's outputs are
    recorded only."""
    generator = ("loss_pixel", *(("loss_perceptual",) if cfg.loss.perceptual_weight > 0 else ()), "loss_adv_g",
                 "loss_g", "loss_adv_raw")
    return {"warmup": ("loss_pixel",), "generator": generator,
            "discriminator": ("loss_d_real", "loss_d_fake", "d_real", "d_fake", "d_gap")}


@torch.no_grad()
def d_outputs(real_logits: torch.Tensor, fake_logits: torch.Tensor, *, relativistic: bool,
              batch_mean: BatchMean) -> dict[str, torch.Tensor]:
    """D's mean sigmoid outputs on real and fake and their gap (`srgan.losses.d_gap`): D_Ra's own gap, with the
    loss's batch mean, for a relativistic D (global under DDP: two scalar all-reduces)."""
    d_real, d_fake = torch.sigmoid(real_logits).mean(), torch.sigmoid(fake_logits).mean()
    gap = d_gap(*relative_logits(real_logits, fake_logits, batch_mean)) if relativistic else d_real - d_fake
    return {"d_real": d_real, "d_fake": d_fake, "d_gap": gap}


class StepRecord:
    """The interval's metric sums and the earliest non-finite loss, on the device.

    `add` (once per phase of a step) stacks the phase's values, adds them to the interval's sums and keeps the
    earliest non-finite loss as one float64 key, `((MAX - step) * 64 + 63 - code) * 4 + kind + 1` with `code` =
    16 * phase + loss index: a larger key is an earlier step, then phase, then loss, so the maximum over steps
    (and over ranks) is the first failure; 0 is "all finite". Nothing reads a value: the first bad loss is found
    by a masked maximum, not by indexing. `found_inf` (1 from the first bad step on) makes Adam skip updates.
    `norms` holds the gradient norms of the current step (cleared by `start_step`), `lrs` its learning rates."""

    def __init__(self, names: dict[str, tuple[str, ...]], *, step: int, device: torch.device) -> None:
        self.names = names
        self.checked: dict[str, int] = {}
        self._ranks: dict[str, torch.Tensor] = {}  # per checked loss: (63 - code) * 4 + 1; made here, not per step
        for phase, metrics in names.items():
            losses = [n for n in metrics if n in LOSS_NAMES]
            assert tuple(losses) == metrics[: len(losses)], f"{phase}: losses must come first in {metrics}"
            self.checked[phase] = len(losses)
            codes = [PHASES.index(phase) * 16 + LOSS_NAMES.index(n) for n in losses]
            self._ranks[phase] = torch.tensor([(63 - c) * 4 + 1 for c in codes], dtype=torch.float64,
                                              device=device)
        self.step = torch.full((), float(step), dtype=torch.float64, device=device)
        self.bad_key = torch.zeros((), dtype=torch.float64, device=device)
        self.found_inf = torch.zeros((), dtype=torch.float32, device=device)
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.norms: dict[str, torch.Tensor] = {}
        self.lrs: dict[str, float] = {}
        self.last: int | None = None  # 0-based index of the interval's last finished step

    def start_step(self, lr_g: float, lr_d: float) -> None:
        self.norms = {}
        self.lrs = {"lr_g": lr_g, "lr_d": lr_d}

    def add(self, phase: str, values: dict[str, torch.Tensor]) -> None:
        if tuple(values) != self.names[phase]:
            raise KeyError(f"{phase} records {self.names[phase]}, got {tuple(values)}")
        vec = torch.stack([v.detach().to(torch.float64) for v in values.values()])  # (n,)
        if phase in self.sums:
            self.sums[phase].add_(vec)
        else:
            self.sums[phase] = vec  # a fresh tensor (the stack): safe to add into
        self.counts[phase] = self.counts.get(phase, 0) + 1
        losses = vec[: self.checked[phase]]
        kind = torch.where(torch.isnan(losses), 0.0, torch.where(losses > 0, 1.0, 2.0))  # nan, inf, -inf
        keys = (_MAX_STEP - self.step) * 256 + self._ranks[phase] + kind
        first_bad = torch.where(torch.isfinite(losses), 0.0, keys).amax()
        torch.maximum(self.bad_key, first_bad, out=self.bad_key)
        self.found_inf.copy_(self.bad_key > 0)

    def end_step(self, index: int) -> None:
        self.step += 1
        self.last = index

    def pop(self, *, reduce: Reduce | None = None) -> Metrics:
        """Everything since the last call as floats (one device-to-host copy); starts a new interval. Raises
        `NonFiniteLoss` naming the first bad step, phase and loss (of any rank, with `reduce`: see
        `srgan.engine`'s module docstring)."""
        key = self.bad_key.reshape(1).clone()
        if reduce is not None:
            key = reduce(key)
        taken = [(phase, self.counts[phase], sums) for phase, sums in self.sums.items()]
        self.sums, self.counts = {}, {}
        norms = list(self.norms.items())
        parts = [key, *(sums for _, _, sums in taken), *(n.detach().reshape(1).double() for _, n in norms)]
        flat = torch.cat([part.to(torch.float64) for part in parts]).cpu().tolist()  # the one host sync
        if flat[0] > 0:
            raise NonFiniteLoss(self.decode(flat[0]))
        totals: dict[str, list[float]] = {}  # name -> [sum, steps] (loss_pixel: warmup and GAN steps together)
        i = 1
        for phase, steps, _ in taken:
            for name in self.names[phase]:
                acc = totals.setdefault(name, [0.0, 0])
                acc[0] += flat[i]
                acc[1] += steps
                i += 1
        out: Metrics = {name: total / n for name, (total, n) in totals.items()}
        out.update({name: value for (name, _), value in zip(norms, flat[i:], strict=True)})
        steps = sum(n for phase, n, _ in taken if phase in ("warmup", "generator"))
        out["steps"] = float(steps)
        if steps and self.last is not None:  # None: phases run by hand, outside `GanEngine.train_step`
            out.update(step=float(self.last), **self.lrs)
        self.norms = {}
        return out

    @staticmethod
    def decode(key: float) -> str:
        k = int(key) - 1
        kind, k = k % 4, k // 4
        code, k = 63 - k % 64, k // 64
        phase, loss = PHASES[code // 16], LOSS_NAMES[code % 16]
        return f"{phase} step {_MAX_STEP - k}: {loss} is {_VALUE_KINDS[kind]}"
