"""The results folder: its schema, reading and writing its tables, trial rows and provenance.

Imports neither torch nor Ray, so that `reports` (and anyone with polars) can read results anywhere.
"""
