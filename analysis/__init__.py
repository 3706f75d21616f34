"""Forensic analysis tools: where a model's real-vs-fake information lives, and which path it uses.

    deepvrm probe      layer-wise linear probes (the paper's analysis) and a suggested injection layer
    deepvrm attribute  per-image attribution of a Deep-VRM's decisions to its artifact and semantic paths

Each command is a module with `main(argv) -> int`; `synthetic` writes constructed real/fake sets
with a known artifact for checking them.
"""
