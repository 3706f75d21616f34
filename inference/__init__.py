"""Scoring images with a Deep-VRM model from Python: `Detector` (batched, threaded, per-image errors)
and image reading (`images`). The `deepvrm detect` / `evaluate` commands are built on these."""
