"""Measuring tools in two jobs: `scoring` (the papers' protocol: datasets, metrics, evaluate) and `speed` (throughput
against a reference step, cost, GPU checks; imports scoring). Entry modules beside them: `evaluate`, `prefetch`."""
