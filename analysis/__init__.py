"""Forensic analysis tools: where a model's real-vs-fake information lives, and which path it uses.

    deepvrm probe      layer-wise linear probes (the paper's analysis) and a suggested injection layer
    deepvrm attribute  per-image attribution of a Deep-VRM's decisions to its artifact and semantic paths

Each command's options are in `deepvrm.cli.probe` / `deepvrm.cli.attribute`, which import its
module here (`run(args) -> int`) once the arguments parse; `synthetic` writes constructed real/fake
sets with a known artifact for checking them.
"""

# What the probe reads at each depth (named in the command's --suggest-from choices, so defined here,
# where reading it imports nothing heavy).
REPRESENTATIONS = {"image": "image tokens (mean)", "last": "last prompt token"}
