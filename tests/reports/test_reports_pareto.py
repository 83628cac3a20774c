"""reports.pareto_section: a Pareto search's section from pareto.parquet and pareto_confirm.parquet (synthetic,
built with results.pareto's own functions): the front in order along the trade-off, its seed ranges, the planes
drawn through the report's one PD-plane function, and hostile text escaped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
from reports_synthetic import write_synthetic_results

from reports.build import build_report
from reports.pareto_section import pareto_section
from results.pareto import confirm_summary, with_front


def _search(folder: Path, *, preset: str = "v2") -> pl.DataFrame:
    """Five trials over adv_weight: a, b, c on the front (PSNR falls as NIQE improves), d dominated, e no NIQE."""
    table = pl.DataFrame({
        "trial_id": ["a", "b", "c", "d", "e"], "label": [f"{preset} t{i}" for i in range(5)],
        "status": ["TERMINATED"] * 5, "seed": [0] * 5, "preset": [preset] * 5,
        "loss.adv_weight": [1e-4, 1e-3, 1e-2, 5e-3, 2e-2],
        "val_psnr": [27.0, 26.5, 25.0, 24.0, 28.0], "val_niqe": [9.0, 8.0, 6.0, 8.5, None]})
    table = with_front(table, ["val_psnr", "val_niqe"], ["max", "min"])
    table.write_parquet(folder / "pareto.parquet")
    return table


def _confirm(folder: Path) -> pl.DataFrame:
    """Each front point with two seeds on Set5: a and b overlap everywhere, c is far from b."""
    members = pl.DataFrame({"point": ["a", "a", "b", "b", "c", "c"], "trial_id": ["a", "a1", "b", "b1", "c", "c1"],
                            "seed": [0, 1] * 3})
    summary = pl.DataFrame({"trial_id": ["a", "a1", "b", "b1", "c", "c1"], "dataset": ["set5"] * 6,
                            "psnr": [28.0, 28.4, 28.2, 28.3, 26.0, 26.2], "niqe": [7.0, 7.4, 7.1, 7.3, 5.0, 5.2]})
    confirmed = confirm_summary(members, summary, [("psnr", "max"), ("niqe", "min")])
    confirmed.write_parquet(folder / "pareto_confirm.parquet")
    return confirmed


def test_a_folder_without_a_search_has_no_section(tmp_path: Path) -> None:
    assert pareto_section(tmp_path) is None


def test_the_front_is_tabled_along_the_trade_off_with_its_seed_ranges(tmp_path: Path) -> None:
    _search(tmp_path)
    confirmed = _confirm(tmp_path)
    section = pareto_section(tmp_path)
    assert [r.weights for r in section.rows] == ["adv_weight=0.0001", "adv_weight=0.001", "adv_weight=0.01"]
    assert section.rows[0].objectives == ["27.00", "9.000"]
    assert section.confirmed_names == ["PSNR on set5", "NIQE on set5"]
    assert section.rows[2].confirmed[0] == "26.10 [26.00–26.20], 2 seeds"
    # a's and b's seed ranges overlap on both metrics: neither is told apart from the other
    a = confirmed.filter(pl.col("point") == "a").row(0, named=True)
    assert a["distinguishable"] is False and "not told apart" in section.rows[0].verdict
    assert "5 trial(s)" in section.summary and "3 on the front" in section.summary
    ids = [plane[0] for plane in section.planes]
    assert ids == ["pareto-plane-search", "pareto-plane-0"]
    search = json.loads(section.planes[0][1])
    faint = next(t for t in search["data"] if t.get("name") == "all trials")
    assert len(faint["x"]) == 4  # e has no NIQE: not on the plane
    line = next(t for t in search["data"] if t.get("name") == "Pareto front")
    assert line["x"] == sorted(line["x"]) and len(line["x"]) == 3


def test_an_unconfirmed_front_says_so(tmp_path: Path) -> None:
    _search(tmp_path)
    section = pareto_section(tmp_path)
    assert section.confirmed_names == [] and "not confirmed over seeds" in section.notes[0]
    assert [p[0] for p in section.planes] == ["pareto-plane-search"]


def test_the_report_shows_the_section_with_hostile_text_escaped(tmp_path: Path) -> None:
    folder = write_synthetic_results(tmp_path / "results", 3, ("Set5",))
    table = _search(folder, preset="<img src=x onerror=alert(1)>")
    table = table.with_columns(pl.Series("preset", ["v2", "<b>x</b>", "v2", "v2", "v2"]))
    table.write_parquet(folder / "pareto.parquet")
    _confirm(folder)
    html = build_report(folder, tmp_path / "report").read_text()
    assert 'id="pareto"' in html and "pareto-plane-search" in html
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    body = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.DOTALL)
    assert "adv_weight=0.01" in body
