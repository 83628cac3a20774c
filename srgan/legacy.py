"""srgan's renamed words, in one place: `RENAMED_SIZES`, the size names used before the size ladder was unified, each
mapped to today's so that an old name is an error naming the new one (`srgan.versions.check_size`).

They go on CUTOFF, the same day as the shims in `results.legacy` (which lists the other layers' ones; srgan imports
nothing from results, so the date is written here too and tests/results/test_results_legacy.py holds the two equal
and fails once the day has come).
"""

from __future__ import annotations

import datetime

CUTOFF = datetime.date(2027, 6, 1)

RENAMED_SIZES = {"small": "cpu", "smoke": "tiny"}
