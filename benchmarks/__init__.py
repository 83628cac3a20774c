"""Measuring tools: scoring with the papers' protocol (datasets, metrics, NIQE, `evaluate`, published references)
and speed and cost (the engine's throughput against a reference step, step-time cost estimates, the GPU check)."""
