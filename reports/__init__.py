"""The HTML report, read from a results folder only (polars, plotly, Jinja2): the study's claims, verdicts, ladder and
Pareto sections, figures and curves, every string escaped. Imports `results` only: no torch, no Ray."""
