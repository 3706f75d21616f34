"""Using a Deep-VRM model from Python, and what every command that uses one shares:

    detector   Detector (batched, threaded scoring with per-image errors), load_classifier
    images     opening images safely (any mode to upright RGB, decompression bombs refused)
    files      the one folder walker (which files in a folder are images)
    sources    what a model argument names (folder or Hub id; deepvrm, official layout, plain
               Qwen2.5-VL, adapter) and the default demo model
    devices    the dtype names and device/dtype resolution
    batches    batching, and retrying a failed batch item by item
    processes  scoring across the processes `accelerate launch` starts (shares, merging)
    errors     ModelLoadError, one-line error text

The `deepvrm detect` / `evaluate` commands are built on these."""
