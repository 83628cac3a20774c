"""The results folder: its schema, reading and writing its tables, trial rows and provenance, the statistics of the
study tables (`results.study` and its `study_*` modules, `dose`, `pareto`, `stats`) and the readings of renamed words
that older folders still need (`legacy`, until its cutoff).

Imports neither torch nor Ray, so that `reports` (and anyone with polars) can read results anywhere.
"""
