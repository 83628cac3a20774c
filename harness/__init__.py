"""The harness: where Ray lives. Three jobs in subpackages, each importing only the ones below it:
`sweeps` (plan, run, collect and score sweeps and studies) -> `run` (one training run) -> `cluster` (Ray plumbing).
The commands are `python -m harness.train`, `harness.sweep` and `harness.study` (the modules beside this one)."""
