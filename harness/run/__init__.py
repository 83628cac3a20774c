"""One training run: the training loop and its CLI (`train`), its folder, config and data (`runs`, `storage`,
`validation`, `lock`), where it runs (`session`, `worker`) and a fixed-time quality check. Imports only `cluster`."""
