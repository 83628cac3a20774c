"""The shims for renamed words have one home per layer that may hold them (results.legacy, and srgan.legacy for the
layer that cannot import results) and one day they go: from that day on this test fails, reminding to delete them."""

from __future__ import annotations

import datetime
import inspect

from results import legacy
from srgan import legacy as srgan_legacy

REMINDER = ("the renamed-word shims were to go on {day}: delete results/legacy.py and srgan/legacy.py and the lines "
            "that read them (their docstrings list where), then this test")


def test_the_renamed_word_shims_are_deleted_by_their_cutoff() -> None:
    assert datetime.date.today() < legacy.CUTOFF, REMINDER.format(day=legacy.CUTOFF.isoformat())


def test_srgan_s_shims_go_on_the_same_day() -> None:
    assert srgan_legacy.CUTOFF == legacy.CUTOFF


def test_every_shim_is_in_its_module_s_list() -> None:
    """What the docstring lists is what the module holds, so the list says everything that goes on the day."""
    for module in (legacy, srgan_legacy):
        shims = [name for name, value in vars(module).items() if name != "CUTOFF" and (
            name.isupper() or inspect.isfunction(value) and value.__module__ == module.__name__
            and not name.startswith("_"))]
        assert shims, module.__name__
        for name in shims:
            assert f"`{name}`" in (module.__doc__ or ""), f"{module.__name__}.{name} is not in its docstring's list"
