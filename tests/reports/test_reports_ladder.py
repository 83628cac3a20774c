"""The PD plane a reader can read (reports.plane.pd_plane: bars inside the metric's range, a runaway point at
the edge and named, labels apart, flags kept) and the Study section's answer to the trade-off claim from the
ladder (reports.study_ladder: the exchange-rate sentence, the table, the ladder as a path on the plane)."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from ladder_synthetic import SLOPES, add_ladder, add_seeds
from reports_synthetic import write_synthetic_study

from reports import build, plane, study_ladder
from reports.load import load_results
from results import schema
from results.study import compute_study

SMALL = {"seeds": (0, 1, 2), "datasets": ("Set5",), "images_per_dataset": 3, "steps": 20}


def _marks_and_bars(fig) -> list[tuple[float, float, dict, dict]]:
    """(x, y, error_x, error_y) of every single-point trace with bars."""
    out = []
    for trace in fig.to_plotly_json()["data"]:
        if trace.get("error_x") is not None and len(trace["x"]) == 1:
            out.append((trace["x"][0], trace["y"][0], trace["error_x"], trace["error_y"]))
    return out


# ------------------------------------------------------------------------------------------- the plane


def test_the_bars_never_leave_the_metrics_range() -> None:
    """Intervals that run past NIQE's and PSNR's lower bound of 0 (a mean ± std would) are clipped there."""
    rng = np.random.default_rng(0)
    marks = []
    for k in range(30):
        x, y = float(rng.uniform(0.5, 12)), float(rng.uniform(1, 30))
        marks.append(plane.PlaneMark(f"p{k}", x, y, x - float(rng.uniform(0, 20)), x + float(rng.uniform(0, 20)),
                                       y - float(rng.uniform(0, 40)), y + float(rng.uniform(0, 5))))
    fig = plane.pd_plane([plane.PlaneSeries("all", marks, "points")], metric="niqe", title="bars")
    checked = 0
    for x, y, ex, ey in _marks_and_bars(fig):
        for value, bar, metric in ((x, ex, "niqe"), (y, ey, "psnr")):
            lower, upper = schema.METRICS[metric].lower, schema.METRICS[metric].upper
            if bar["visible"]:
                assert value - bar["arrayminus"][0] >= lower - 1e-12
                assert value + bar["array"][0] <= upper
                checked += 1
    assert checked >= 40  # most marks are inside the view and have both bars
    lpips = plane.pd_plane([plane.PlaneSeries("one", [plane.PlaneMark("a", 0.05, 20, -0.2, 0.3, 19, 21)],
                                                  "points")], metric="lpips", title="lpips")
    (x, _, ex, _), = _marks_and_bars(lpips)
    assert ex["arrayminus"] == [pytest.approx(0.05)]  # cut at LPIPS's 0, not at -0.2


def test_one_runaway_seed_does_not_set_the_axes() -> None:
    """The issue's case: v3 seed 2 at NIQE 73.3 (RaGAN 31.9) with eight points near NIQE 8."""
    rng = np.random.default_rng(1)
    names = ["bicubic", "srresnet-pretrain", "v1", "v2", "rrdb-pretrain", "esrgan", "srresnet-continued", "v3x"]
    cluster = [plane.PlaneMark(n, float(rng.uniform(7.8, 9.2)), float(rng.uniform(27.5, 28.8))) for n in names]
    runaway = [plane.PlaneMark("v3", 73.3, 27.9), plane.PlaneMark("ragan", 31.9, 28.0)]
    series = [plane.PlaneSeries(m.label, [m], "points") for m in cluster + runaway]
    fig = plane.pd_plane(series, metric="niqe", title="runaway")
    layout = fig.to_plotly_json()["layout"]
    high, low = layout["xaxis"]["range"]  # NIQE: lower is better, the axis is reversed
    assert high > low and high < 12 and low > 6  # the view is the cluster's
    title = html.unescape(layout["title"]["text"])
    assert "v3: NIQE 73.300" in title and "ragan: NIQE 31.900" in title
    edge = {t["name"]: t for t in fig.to_plotly_json()["data"]}
    for name in ("v3", "ragan"):
        assert edge[name]["x"] == [high] and edge[name]["marker"]["symbol"].startswith("triangle")
        assert edge[name]["error_x"]["visible"] is False
    for m in cluster:
        assert low <= edge[m.label]["x"][0] <= high


VERSIONS = ("bicubic", "srresnet-pretrain", "v1", "v2", "v3", "ragan", "rrdb-pretrain", "esrgan",
            "srresnet-continued", "rrdb-continued")


def _overlapping(points, spots, x_range, y_range) -> int:
    """Pairs of label boxes that share an area (the intersection's width and height both positive; written here,
    not taken from figures, whose placement uses its own test)."""
    boxes = _label_boxes(points, spots, x_range, y_range)
    return sum(min(a[2], b[2]) - max(a[0], b[0]) > 0 and min(a[3], b[3]) - max(a[1], b[1]) > 0
               for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_labels_do_not_print_over_each_other() -> None:
    """Ten versions' labels at random places in the (zoomed) view: placed, at most 5 % of the layouts keep an
    overlap (measured: 2 %), where every label above its point (one position per trace) overlaps in 86 %."""
    x_range = y_range = (-0.08, 1.08)
    placed = naive = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        points = [(float(rng.uniform(0, 1)), float(rng.uniform(0, 1)), name) for name in VERSIONS]
        placed += _overlapping(points, plane._label_spots(points, x_range, y_range), x_range, y_range) > 0
        naive += _overlapping(points, ["top center"] * len(points), x_range, y_range) > 0
    assert placed <= 5 and naive >= 50
    twins = [(0.5, 0.5, "v2"), (0.5, 0.5, "v3")]  # coincident points: two different spots
    spots = plane._label_spots(twins, x_range, y_range)
    assert spots[0] != spots[1] and _overlapping(twins, spots, x_range, y_range) == 0


def _label_boxes(points, spots, x_range, y_range):
    """The boxes `_label_spots` reasons about, recomputed from its output (same geometry)."""
    out = []
    for (x, y, label), spot in zip(points, spots, strict=True):
        nx, ny = (x - x_range[0]) / (x_range[1] - x_range[0]), (y - y_range[0]) / (y_range[1] - y_range[0])
        w, h, gap = plane.LABEL_CHAR * len(label) + 0.01, plane.LABEL_HEIGHT, 0.02
        vertical, horizontal = spot.split()
        cy = ny + (h / 2 + gap if vertical == "top" else -h / 2 - gap if vertical == "bottom" else 0.0)
        cx = nx + (w / 2 + gap if horizontal == "right" else -w / 2 - gap if horizontal == "left" else 0.0)
        out.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    return out


def test_a_flagged_point_keeps_its_flag_and_text_is_escaped() -> None:
    mark = plane.PlaneMark("<b>v3</b>", 8.0, 28.0, 7.5, 9.0, 27.0, 29.0, flag="untrained VGG19 features")
    plain = plane.PlaneMark("v2", 9.0, 28.5)
    fig = plane.pd_plane([plane.PlaneSeries("v3", [mark], "points"), plane.PlaneSeries("v2", [plain], "points")],
                           metric="niqe", title="flags")
    traces = {t["name"]: t for t in fig.to_plotly_json()["data"]}
    assert traces["v3"]["text"] == ["&lt;b&gt;v3&lt;/b&gt; †"]
    assert traces["v3"]["marker"]["symbol"] == "circle-open" and traces["v2"]["marker"]["symbol"] == "circle"
    assert "flag: untrained VGG19 features" in traces["v3"]["hovertemplate"]
    assert "† untrained VGG19 features" in fig.to_plotly_json()["layout"]["title"]["text"]


def test_every_version_with_untrained_features_is_flagged_on_the_study_plane(study_results: Path,
                                                                               tmp_path: Path) -> None:
    page = build.build_report(study_results, tmp_path / "report").read_text()
    for blob in re.findall(r'<script type="application/json" id="study-plane-\d+">(.*?)</script>', page, re.S):
        traces = {t["name"]: t for t in json.loads(blob)["data"]}
        for version in ("v3", "ragan", "esrgan"):  # the synthetic study's untrained-VGG versions
            assert traces[version]["text"][0].endswith("†") and "-open" in traces[version]["marker"]["symbol"]
        assert not traces["v2"]["text"][0].endswith("†")


# ------------------------------------------------------------------------------------------- the ladder


@pytest.fixture(scope="module")
def ladder_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = write_synthetic_study(tmp_path_factory.mktemp("ladder"), presets=("v2", "v3"), missing_lpips=True,
                                   compute=False, **SMALL)
    add_ladder(folder, v2_arm=1e-3)
    compute_study(folder)
    return folder, build.build_report(folder).read_text()


def test_the_trade_off_sentence_gives_the_exchange_rate_and_says_niqe_worsens(ladder_report) -> None:
    folder, page = ladder_report
    claims = [html.unescape(c) for c in re.findall(r'<li class="claim">(.*?)</li>', page, re.S)]
    at = next(k for k, c in enumerate(claims) if "trades PSNR for perceptual quality" in c)
    sentence = claims[at + 1]  # right after the claim it answers
    trend = pl.read_parquet(folder / schema.STUDY_DOSE_FILE).filter(pl.col("dataset") == "Set5")
    psnr = trend.filter(pl.col("metric") == "psnr").row(0, named=True)
    niqe = trend.filter(pl.col("metric") == "niqe").row(0, named=True)
    assert (f"each ×10 of adv_weight changes PSNR by {psnr['slope']:+.2f} dB [{psnr['ci_low']:+.2f}, "
            f"{psnr['ci_high']:+.2f}] and NIQE by {niqe['slope']:+.3f} [{niqe['ci_low']:+.3f}, "
            f"{niqe['ci_high']:+.3f}]") in sentence
    assert "NIQE worsens with the weight too" in sentence and "trade-off is not reproduced here" in sentence
    for lacking in ("ImageNet perceptual features", "10^5 GAN steps", "SRGAN trains 2 × 10^5 updates, sec. 3.2",
                    "full-size discriminator"):
        assert lacking in sentence
    # the GAN-stage claim now rests on the equal-budget controls
    assert "v2 - srresnet-continued" in claims[at] and "pretrain" not in claims[at]


def test_the_trade_off_reproduced_is_said_so(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "good", presets=("v2",), missing_lpips=True, compute=False, **SMALL)
    add_ladder(folder, slopes={**SLOPES, "niqe": -1.5})
    compute_study(folder)
    results = load_results(folder)
    section = build.study(results)
    sentence = next(c for c in section.claims if c.startswith("Trade-off, measured"))
    assert "PSNR falls and NIQE improves as the weight grows: the trade-off is reproduced at this size" in sentence
    assert "lacks" not in sentence


def test_the_ladder_table_and_its_path_on_the_plane(ladder_report) -> None:
    folder, page = ladder_report
    trend = pl.read_parquet(folder / schema.STUDY_DOSE_FILE).filter(pl.col("dataset") == "Set5")
    weights = json.loads(trend["weights"][0])
    assert weights == [0.0, 0.001, 0.01, 0.1, 1.0]
    table = page[page.index('<table class="study-ladder">'):]
    table = table[:table.index("</table>")]
    rows = re.findall(r'<th scope="row"[^>]*>([^<]*)</th>', table)
    assert rows == ["adv_weight = 0 (srresnet-continued)", "adv_weight = 0.001", "adv_weight = 0.01",
                    "adv_weight = 0.1", "adv_weight = 1", "per ×10 of the weight"]
    assert "LPIPS" not in table  # measured on no arm: no column
    study = pl.read_parquet(folder / schema.STUDY_FILE).filter((pl.col("dataset") == "Set5")
                                                               & (pl.col("metric") == "psnr"))
    cells = re.findall(r'<tr><th scope="row"[^>]*>([^<]*)</th>\s*<td[^>]*>[^<]*<br><small>([^<]*)</small>', table)
    for label, diff in cells[1:]:  # each arm against the 0 arm (srresnet-continued): its own study row
        arm = {"adv_weight = 0.001": "v2"}.get(label, label.replace("adv_weight = ", "v2@adv_weight="))
        row = study.filter((pl.col("a") == arm) & (pl.col("b") == "srresnet-continued")).row(0, named=True)
        assert diff.startswith(f"{row['mean_diff']:+.2f} dB [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"), label
    assert len(cells) == 5
    blob = re.search(r'<script type="application/json" id="study-ladder-0">(.*?)</script>', page, re.S).group(1)
    figure = json.loads(blob)
    path = next(t for t in figure["data"] if t.get("mode") == "lines")
    niqe = json.loads(trend.filter(pl.col("metric") == "niqe")["arm_means"][0])
    psnr = json.loads(trend.filter(pl.col("metric") == "psnr")["arm_means"][0])
    x_range = sorted(figure["layout"]["xaxis"]["range"])
    assert path["x"] == pytest.approx([min(max(v, x_range[0]), x_range[1]) for v in niqe])  # in weight order
    assert path["y"] == pytest.approx(psnr)
    low = json.loads(trend.filter(pl.col("metric") == "psnr")["arm_low"][0])
    bars = [t for t in figure["data"] if t.get("mode") == "markers+text"]
    assert len(bars) == len(weights)
    for trace, lo in zip(bars, low, strict=True):
        if trace["error_y"]["visible"]:
            assert trace["y"][0] - trace["error_y"]["arrayminus"][0] == pytest.approx(lo)  # the seed range


def test_a_hostile_ladder_name_is_escaped(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "hostile", presets=("v2",), compute=False, **SMALL)
    add_ladder(folder)
    trials = pl.read_parquet(folder / schema.TRIALS_FILE)
    hostile = "<script>window.__xss=9</script>"
    trials.with_columns(pl.when(pl.col("ladder_key").is_not_null()).then(pl.lit(hostile))
                        .otherwise(pl.col("ladder_recipe")).alias("ladder_recipe")).write_parquet(
        folder / schema.TRIALS_FILE)
    compute_study(folder)
    page = build.build_report(folder).read_text()
    assert hostile not in page and "&lt;script&gt;window.__xss=9&lt;/script&gt;" in page


def test_no_ladder_no_ladder_section(study_results: Path, tmp_path: Path) -> None:
    page = build.build_report(study_results, tmp_path / "report").read_text()
    assert 'id="study-ladder"' not in page and "Trade-off, measured" not in page
    assert study_ladder.ladder_section(None, pl.DataFrame(), pl.DataFrame(), [], {}) is None


def test_what_the_run_lacks_comes_from_its_configs() -> None:
    text = study_ladder.lacks({"perceptual_weight": 1.0, "perceptual_features": "untrained", "gan_steps": 80,
                               "d_stages": 3})
    assert "this run's VGG19 features are untrained" in text and "80 here" in text and "3 stages here" in text
    assert math.isfinite(len(text))


def test_the_trial_plane_keeps_a_runaway_trial_at_its_edge() -> None:
    rng = np.random.default_rng(2)
    ids = [f"t{k}" for k in range(9)] + ["bicubic", "runaway"]
    niqe = [float(v) for v in rng.uniform(7.5, 9.5, 9)] + [7.4, 73.3]
    psnr = [float(v) for v in rng.uniform(27, 29, 9)] + [26.5, 27.5]
    summary = pl.DataFrame({"trial_id": ids, "dataset": ["Set5"] * 11, "niqe": niqe, "psnr": psnr})
    trials = pl.DataFrame({"trial_id": ids, "label": ids, "status": ["ok"] * 9 + ["baseline", "ok"]})
    fig = plane.perception_distortion(summary, trials, "Set5", "niqe").to_plotly_json()
    high, low = fig["layout"]["xaxis"]["range"]
    assert high < 12 and "runaway: NIQE 73.300" in html.unescape(fig["layout"]["title"]["text"])
    cloud = next(t for t in fig["data"] if t["name"] == "trials")
    k = cloud["text"].index("runaway")
    assert cloud["x"][k] == high and cloud["customdata"][k][0] == 73.3  # drawn at the edge, hovered at its value
    assert cloud["marker"]["symbol"][k].startswith("triangle")
    front = next(t for t in fig["data"] if t["name"] == "Pareto front")
    assert 73.3 not in front["x"]


def test_the_trial_plane_flags_every_trial_with_untrained_features(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "flags", presets=("v2", "v3"), compute=False, **SMALL)
    results = load_results(folder)
    fig = plane.perception_distortion(results.summary, results.trials, "Set5", "lpips").to_plotly_json()
    cloud = next(t for t in fig["data"] if t["name"] == "trials")
    for text, symbol in zip(cloud["text"], cloud["marker"]["symbol"], strict=True):
        flagged = text.startswith("v3")  # the synthetic study's v3 trials use untrained VGG19 features
        assert ("†" in text) == flagged and symbol.endswith("-open") == flagged
    assert "† untrained VGG19 features" in fig["layout"]["title"]["text"]


def test_an_arm_with_more_seeds_says_how_many(tmp_path: Path) -> None:
    """The ladder's top arm and 0 arm with a further seed block (harness.sweeps.arms): their rows say 6 seeds, the
    others (the study's 3) say nothing, and the top arm's difference is its six-seed study row."""
    folder = write_synthetic_study(tmp_path / "more", presets=("v2",), compute=False, **SMALL)
    add_ladder(folder)
    add_seeds(folder, ["srresnet-continued", "v2@adv_weight=1"], [3, 4, 5])
    compute_study(folder)
    page = build.build_report(folder).read_text()
    table = page[page.index('<table class="study-ladder">'):]
    rows = re.findall(r'<th scope="row"[^>]*>([^<]*)</th>', table[:table.index("</table>")])
    assert rows == ["adv_weight = 0 (srresnet-continued, 6 seeds)", "adv_weight = 0.01", "adv_weight = 0.1",
                    "adv_weight = 1 (6 seeds)", "per ×10 of the weight"]
    top = pl.read_parquet(folder / schema.STUDY_FILE).filter(
        (pl.col("a") == "v2@adv_weight=1") & (pl.col("dataset") == "Set5") & (pl.col("metric") == "psnr"))
    assert top["n_seeds"].to_list() == [6]


def test_marks_drawn_over_each_other_share_one_label() -> None:
    """The ladder's 0 arm and 1e-3 arm score within 0.05 NIQE and 0.01 dB of each other (the main job's Set5): one
    marker covers the other, so their labels would compete for one spot (one was pushed off the plot under the
    legend). They share one label; a mark a marker's size away keeps its own."""
    arms = [plane.PlaneMark("adv_weight = 0", 8.551, 28.71), plane.PlaneMark("adv_weight = 0.001", 8.498, 28.72),
            plane.PlaneMark("adv_weight = 0.1", 14.75, 26.89), plane.PlaneMark("adv_weight = 10", 76.7, 15.42)]
    fig = plane.pd_plane([plane.PlaneSeries("v2 loss.adv_weight", arms, "path")], metric="niqe", title="ladder")
    texts = [t["text"][0] for t in fig.to_plotly_json()["data"] if t.get("mode") == "markers+text"]
    assert texts == ["adv_weight = 0, 0.001", "", "adv_weight = 0.1", "adv_weight = 10"]
    twins = [(0.5, 0.5, "v2"), (0.5, 0.5, "srresnet-continued"), (0.9, 0.1, "v3")]
    assert plane.merged_labels(twins, (0, 1), (0, 1)) == ["v2 / srresnet-continued", "", "v3"]
    apart = [(0.5, 0.5, "v2"), (0.52, 0.5, "v3")]  # 2 % of the width apart: more than a marker, two labels
    assert plane.merged_labels(apart, (0, 1), (0, 1)) == ["v2", "v3"]
