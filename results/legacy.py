"""Renamed words, still read: every shim that lets an older results folder, sweep record or command line work after
a word changed. Each goes on CUTOFF; after that date tests/results/test_results_legacy.py fails, reminding to delete
this module (and srgan.legacy) and the lines that read them (importing a deleted name then fails, so none is missed).

What is kept, and where it is read:

- `RENAMED_SIZE_SUFFIXES`: "-small", the `cpu` size's preset suffix in folders written before the size ladder was
  unified (`results.rows.SIZE_SUFFIXES`, `reports.study_claims`);
- `PRETRAIN_NAME`, `FAMILY_OF_ARCH`, `pretraining_version`: the study version of a pretraining in a trials.parquet
  written before the `version` column (2026-12-06): its name without a "-seed<N>" / "-<8 hex>" suffix, or, older
  still, recorded under its GAN preset ("v2", "esrgan"), the family of its generator (`results.rows.trial_version`,
  `reports.tables`);
- `RENAMED_PRETRAIN_SEEDS`: `--pretrain-seed trial`, today `per-seed`: an error naming today's word on the command
  line, and read as today's word in a sweep.json written before the rename (`harness.sweeps.plan`).

srgan imports nothing from results, so its one shim (the old size names "small" and "smoke", an error naming
today's) lives in `srgan.legacy`, with its own CUTOFF that the same test holds equal to this one.

Torch-free; harness, benchmarks and reports import it (results imports no other layer).
"""

from __future__ import annotations

import datetime
import json
import re

CUTOFF = datetime.date(2027, 6, 1)  # the day every shim below goes

RENAMED_SIZE_SUFFIXES = {"-small": "-cpu"}

PRETRAIN_NAME = re.compile(r"(?P<name>[a-z0-9]+-pretrain)(?:-seed\d+|-[0-9a-f]{8})?")
FAMILY_OF_ARCH = {"srresnet": "srresnet", "rrdbnet": "rrdb"}

RENAMED_PRETRAIN_SEEDS = {"trial": "per-seed"}  # the word before the study and the sweep shared theirs


def pretraining_version(preset: str, config_json: str | None) -> str:
    """The version of a pretraining row written without one: "<family>-pretrain" from its preset name, else from
    its config's generator arch; "pretrain" when it has neither."""
    match = PRETRAIN_NAME.fullmatch(preset)
    if match:
        return match["name"]
    arch = _arch(config_json)
    return f"{FAMILY_OF_ARCH.get(arch, arch)}-pretrain" if arch else "pretrain"


def _arch(config_json: str | None) -> str | None:
    try:
        config = json.loads(config_json) if config_json else {}
    except json.JSONDecodeError:
        return None
    generator = config.get("generator") if isinstance(config, dict) else None
    arch = generator.get("arch") if isinstance(generator, dict) else None
    return arch if isinstance(arch, str) and arch else None

