"""Ray plumbing, the lowest job: a local Ray bound to 127.0.0.1 and its watchdog, what a trial or scoring task
asks of the cluster (resources, packing), and the one-line progress of a Tune experiment. Imports no other job."""
