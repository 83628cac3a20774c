"""Scoring with the papers' protocol: the benchmark sets (`datasets`, `prepared`), the metrics (`metrics`: PSNR/SSIM,
LPIPS, NIQE, weights, the protocol) and scoring models or SR files into results (`evaluate`, `images`, `cli`)."""
