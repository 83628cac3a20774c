"""A study's trials beyond its presets: the equal-budget control of every GAN stage and the arms of a loss-weight
ladder, planned before Ray starts (`plan_arms`), and every trial's role in the study (`trial_role`: the `version`,
`control` and `ladder_*` columns of trials.parquet, results/schema.py).

- A control (`srresnet-continued`, `rrdb-continued`) is a GAN stage's pretraining continued with the pixel loss
  only, for exactly the stage's generator updates, on its data order, lr schedule and seed
  (`srgan.versions.continued_stage`): the GAN stage's config with every step a pixel-loss warmup step. GAN stages
  whose controls would be the same run (v2, v3 and RaGAN: one SRResNet pretraining, one GAN-stage data and
  schedule; `control_key`) share one control per seed.
- A ladder (`--ladder KEY=V1,V2,...` on `--ladder-presets`) runs a recipe's GAN stage once per value, each arm
  from the same pretraining per seed with the same budget (a key that would change either is refused). An arm that
  is the same run as a trial already planned is not trained twice: the arm at the recipe's own value is that
  preset's study trial, and the 0 arm of a pixel-only recipe (v2's adversarial weight) is its control.

- More seeds where the ladder's answer needs them (`seed_factor` > 1): its top arm and its 0 arm train that many
  times the study's seeds. The comparison of the top arm with the 0 arm is paired by seed, so it uses every seed
  both have; the other comparisons (and the trend, over seeds with every non-zero arm) use the seeds they share.
  At the `cpu` size the top arm's drop varies from seed to seed by several dB (harness.sweeps.study.LADDER_SEED_FACTOR
  says what was measured): six seeds cannot tell it from zero after Holm, nine can; tripling only the two arms that
  comparison reads costs two trials per seed instead of nine.

Every extra trial is one more value of Tune's `preset` parameter (`SweepSettings.arms`: name -> the recipe and
the arm's own values), so seeds, resume and the plan check treat it as any preset's trial. A trial of a further
seed block is an arm named `<trial> (seed+N)` whose Tune seed s trains with seed s + N (`expand`): Tune's grid
stays presets x seeds, and the trial's row (seed, version, control, ladder arm) is the trial it repeats.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from typing import Any

from srgan.config import ConfigError, ExperimentConfig, to_dict
from srgan.versions import PRESETS, continued_name, continued_stage, pretrain_key, two_stage

LADDER_FIELDS = ("ladder_recipe", "ladder_key", "ladder_value")
# Keys a ladder may not vary: the study sets them itself.
FIXED_KEYS = ("train.seed", "name", "scale", "train.stage", "train.init_from", "train.size", "train.schedule")


def parse_ladder(text: str | None) -> dict[str, list[float]]:
    """`--ladder KEY=V1,V2,...` as {KEY: [values, ascending]}; "none" (or nothing): {} (no ladder). A value that is
    not a finite number, a repeated value or fewer than two values raise a ValueError naming the option."""
    if text is None or text.strip().lower() == "none":
        return {}
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not raw.strip():
        raise ValueError(f"--ladder expects KEY=V1,V2,... (or none), got {text!r}")
    if key in FIXED_KEYS:
        raise ValueError(f"--ladder {key}: the study sets {key} itself (seeds: --seeds); ladder a loss weight or "
                         "another setting of the GAN stage")
    values = []
    for item in raw.split(","):
        try:
            value = float(item.strip())
        except ValueError:
            raise ValueError(f"--ladder {key}: {item.strip()!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"--ladder {key}: {item.strip()!r} is not a finite number")
        values.append(value)
    if len(set(values)) != len(values):
        raise ValueError(f"--ladder {key}: a value is given twice ({raw})")
    if len(values) < 2:
        raise ValueError(f"--ladder {key}: a ladder needs at least two values, got {raw}")
    return {key: sorted(values)}


def parse_ladder_presets(text: str) -> tuple[str, ...]:
    """`--ladder-presets P1,P2`: two-stage presets (checked by name here, by recipe in `plan_arms`)."""
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    if not names:
        raise ValueError("--ladder-presets names no preset")
    for name in names:
        if name not in PRESETS:
            raise ValueError(f"--ladder-presets: unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return names


def arm_name(recipe: str, key: str, value: float) -> str:
    """A ladder arm's trial and study version: "v2@adv_weight=0.01"."""
    return f"{recipe}@{key.rsplit('.', 1)[-1]}={value:g}"


def control_key(gan: ExperimentConfig, pretraining: str) -> str:
    """What makes two GAN stages' controls one run: the control's config (`continued_stage`) without its name,
    losses (pixel only: only its type matters) and the pretraining's folder, plus the pretraining's identity
    (`pretrain_key`)."""
    control = to_dict(continued_stage(gan))
    control.update(name="", loss={"pixel_type": gan.loss.pixel_type})
    control["train"]["init_from"] = ""
    blob = json.dumps([control, pretraining], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def expand(arms: dict[str, dict], params: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A trial's parameters with its arm resolved: (the recipe's parameters with the arm's own values, whether
    the trial is a control). A preset's trial is returned as it is. A further seed block's trial (`seed_offset`)
    trains with its Tune seed plus the offset."""
    arm = arms.get(params.get("preset"))
    if arm is None:
        return params, False
    out = {**params, "preset": arm["preset"], **arm["overrides"]}
    if arm.get("seed_offset"):
        if not isinstance(params.get("train.seed"), int):
            raise ValueError(f"{params.get('preset')}: a further seed block needs the trial's train.seed")
        out["train.seed"] = params["train.seed"] + arm["seed_offset"]
    return out, bool(arm["control"])


def trial_role(pretrainings: dict[str, dict], roles: dict[str, dict], params: dict[str, Any] | None
               ) -> dict[str, Any]:
    """The `version`, `control` and `ladder_*` of a trial with Tune parameters `params` (empty when unknown): a
    pretraining's version is its config's name ("srresnet-pretrain"), a GAN trial's its plan's role."""
    params = params or {}
    if params.get("run_name"):
        config = pretrainings.get(params["run_name"])
        return {"version": config["name"]} if config else {}
    return dict(roles.get(params.get("preset"), {}))


def plan_arms(presets: tuple[str, ...], first: dict[str, Any], *, controls: bool, ladder: dict[str, list[float]],
              ladder_presets: tuple[str, ...], whole: Callable[[dict], ExperimentConfig],
              gan: Callable[[dict], ExperimentConfig], seeds: tuple[int, ...] = (),
              seed_factor: int = 1) -> tuple[dict[str, dict], dict[str, dict]]:
    """(arms, roles): the extra trials of a study (name -> {"preset", "overrides", "control"}, and "seed_offset"
    for a further seed block) and every trial name's role (name -> {"version", "control"?, "ladder_*"?}). `first`
    is the first grid point (the seed); `whole` builds a recipe's whole config from trial parameters, `gan` its GAN
    stage. With `seed_factor` k > 1 each ladder's top arm and 0 arm also train k - 1 further blocks of the study's
    `seeds` (`_more_seeds`). Raises a ValueError naming `--ladder` or `--ladder-presets` for a key or value no arm
    can take, before anything runs."""
    arms: dict[str, dict] = {}
    roles: dict[str, dict] = {p: {"version": p} for p in presets}
    by_key: dict[str, str] = {}  # control_key -> control name
    if controls:
        for preset in presets:
            params = {**first, "preset": preset}
            recipe = whole(params)
            if not two_stage(recipe):
                continue  # single stage (v1): trained for its partner's whole budget, no pretraining to continue
            key = control_key(gan(params), pretrain_key(recipe))
            if key not in by_key:
                name = continued_name(recipe.generator.arch)
                by_key[key] = name if name not in arms else f"{name}-{preset}"
                arms[by_key[key]] = {"preset": preset, "overrides": {}, "control": True}
                roles[by_key[key]] = {"version": by_key[key]}
            roles[preset]["control"] = by_key[key]
    for key, values in ladder.items():
        for recipe in ladder_presets:
            _plan_ladder(recipe, key, values, first, arms, roles, by_key, whole=whole, gan=gan)
            if seed_factor > 1:
                _more_seeds(recipe, key, values, arms, roles, seeds=seeds, factor=seed_factor)
    return arms, roles


def _more_seeds(recipe: str, key: str, values: list[float], arms: dict[str, dict], roles: dict[str, dict], *,
                seeds: tuple[int, ...], factor: int) -> None:
    """Further seed blocks for a ladder's top arm and its 0 arm (none without a 0 arm: the extra seeds serve the
    comparison of the two): block b trains seed s + b x (max seed + 1) for each study seed s, so no block repeats a
    seed. Each block's trial has the role of the trial it repeats."""
    if not seeds:
        raise ValueError("a ladder seed factor needs the study's seeds")
    members = {role["ladder_value"]: name for name, role in roles.items()
               if role.get("ladder_recipe") == recipe and role.get("ladder_key") == key}
    if 0.0 not in members or len(members) < 2:
        return
    for value in (0.0, max(values)):
        name = members[value]
        base = arms.get(name, {"preset": name, "overrides": {}, "control": False})  # a preset's own trial
        for block in range(1, factor):
            offset = block * (max(seeds) + 1)
            arms[f"{name} (seed+{offset})"] = {**base, "seed_offset": offset}
            roles[f"{name} (seed+{offset})"] = dict(roles[name])


def _plan_ladder(recipe: str, key: str, values: list[float], first: dict[str, Any], arms: dict[str, dict],
                 roles: dict[str, dict], by_key: dict[str, str], *, whole: Callable[[dict], ExperimentConfig],
                 gan: Callable[[dict], ExperimentConfig]) -> None:
    base = whole({**first, "preset": recipe})
    if not two_stage(base):
        raise ValueError(f"--ladder-presets: {recipe} is single-stage (no pretraining for its arms to start from)")
    own = _value(base, key)
    for value in values:
        params = {**first, "preset": recipe, key: _typed(base, key, value)}
        try:
            arm = whole(params)
            arm_gan = gan(params)
        except ConfigError as err:
            raise ValueError(f"--ladder {key}: {err}") from None
        except ValueError as err:
            raise ValueError(f"--ladder {key}={value:g} on {recipe}: {err}") from None
        if pretrain_key(arm) != pretrain_key(base):
            raise ValueError(f"--ladder {key}: {key}={value:g} changes {recipe}'s pretraining; every arm must start "
                             "from the same pretraining (ladder a setting of the GAN stage, e.g. loss.adv_weight)")
        if arm.train.total_steps != base.train.total_steps:
            raise ValueError(f"--ladder {key}: {key}={value:g} changes {recipe}'s budget ({arm.train.total_steps} "
                             f"generator updates instead of {base.train.total_steps}); every arm gets the same")
        control = by_key.get(control_key(arm_gan, pretrain_key(arm)))
        membership = {"ladder_recipe": recipe, "ladder_key": key, "ladder_value": value}
        same_as_preset = own is not None and math.isclose(value, own, rel_tol=1e-12, abs_tol=0.0)
        pixel_only = arm_gan.loss.adv_weight == 0 and arm_gan.loss.perceptual_weight == 0
        if same_as_preset and recipe in roles and "ladder_key" not in roles[recipe]:
            roles[recipe].update(membership)  # the preset's own study trial is this arm
        elif pixel_only and control is not None and "ladder_key" not in roles[control]:
            roles[control].update(membership)  # the pixel-only arm is its control's run
        else:
            name = arm_name(recipe, key, value)
            arms[name] = {"preset": recipe, "overrides": {key: value}, "control": False}
            roles[name] = {"version": name, **({"control": control} if control else {}), **membership}


def _typed(cfg: ExperimentConfig, key: str, value: float) -> float | int:
    """`value` as the config's field at `key` holds it: an integer field takes a whole number as an int."""
    node: Any = to_dict(cfg)
    for part in key.split("."):
        node = node[part]
    whole = isinstance(node, int) and not isinstance(node, bool) and value.is_integer()
    return int(value) if whole else value


def _value(cfg: ExperimentConfig, key: str) -> float | None:
    """The number at dotted `key` in `cfg` (None where it is not a number)."""
    node: Any = to_dict(cfg)
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"--ladder {key}: unknown config key")
        node = node[part]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def study_arms(request: Any, first: dict[str, Any], recipe: Callable[..., ExperimentConfig]) -> dict[str, dict]:
    """The `arms` and `roles` of a sweep's settings (`harness.sweeps.plan.SweepSettings`) for its request
    (`harness.sweeps.plan.SweepRequest`): `plan_arms` at the first grid point `first`, with `recipe(params, stage=...,
    init_from=...)` building configs (`harness.sweeps.plan._recipe`)."""
    found, roles = plan_arms(request.presets, first, controls=request.controls, ladder=request.ladder,
                             ladder_presets=request.ladder_presets, whole=recipe,
                             gan=lambda params: recipe(params, stage="gan", init_from="pretraining"),
                             seeds=tuple(request.seeds), seed_factor=request.ladder_seed_factor)
    return {"arms": found, "roles": roles}
