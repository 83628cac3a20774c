"""Sweeps and studies, the top job: plan trials (`plan`, `arms`, `cli`), run them with Ray Tune (`sweep`, `study`,
`pareto_search`, shared and cached pretrainings), recover, collect and score them. Imports `run` and `cluster`."""
