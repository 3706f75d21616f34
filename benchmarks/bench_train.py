"""Stage-2 training benchmark: steps/s and peak memory of `deepvrm train --stage 2`.

    python benchmarks/bench_train.py --preset small --batch-size 4 --steps 12 --json out.json

Each configuration runs `deepvrm train` in its own process (the HF Trainer doing the loop) on a
synthetic checkerboard-vs-smooth set at the preset's pixel budget, and reports the Trainer's
measured steps/s (its train_runtime, first step included) and the process's peak RSS (CPU) or the GPU's
peak allocation: plain, with gradient checkpointing, and with the classification objective.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs `deepvrm train` and reports this process's own peak RSS on exit.
_WRAPPER = (
    "import atexit, resource, sys\n"
    "atexit.register(lambda: print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))\n"
    "from deepvrm.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _logged_dicts(text: str) -> list[dict]:
    """The Trainer's logged metric dicts (printed one per line)."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                entry = ast.literal_eval(line)
            except (ValueError, SyntaxError):
                continue
            found.append({k: _number(v) for k, v in entry.items()})
    return found


CONFIGS = {
    "lm": [],
    "lm+gradient-checkpointing": ["--gradient_checkpointing", "true"],
    "classification": ["--objective", "classification"],
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from deepvrm.analysis.synthetic import write_dataset
    from deepvrm import DeepVRMConfig
    from deepvrm.configuration import preset_config

    side = int(preset_config(args.preset).max_pixels ** 0.5)
    results = {"preset": args.preset, "batch_size": args.batch_size, "steps": args.steps, "image_size": side, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data = write_dataset(Path(tmp) / "data", per_class=args.batch_size * 4, size=side, seed=0)
        for name in args.configs.split(","):
            out = Path(tmp) / name
            cmd = [sys.executable, "-c", _WRAPPER, "train", "--stage", "2", "--model", args.preset,
                   "--train_data", str(data), "--output_dir", str(out), "--max_steps", str(args.steps),
                   "--per_device_train_batch_size", str(args.batch_size), "--global_batch_size", str(args.batch_size),
                   "--save_strategy", "no", "--report_to", "none", "--logging_steps", "1", "--eval_strategy", "no",
                   *CONFIGS[name]]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
            wall = time.perf_counter() - start
            if proc.returncode != 0:
                print(proc.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"{name} failed")
            logs = _logged_dicts(proc.stdout + proc.stderr)
            steps = [e for e in logs if "loss" in e]
            peak = int(re.findall(r"PEAK_RSS_KIB (\d+)", proc.stderr)[-1])
            row = {"wall_seconds": wall, "peak_rss_mib": peak / 1024}
            train = next((e for e in logs if "train_runtime" in e), None)
            if train:
                row["train_runtime_seconds"] = train["train_runtime"]
                row["steps_per_second"] = train["train_steps_per_second"]
                row["samples_per_second"] = train["train_samples_per_second"]
            if steps:
                row["first_loss"], row["last_loss"] = steps[0]["loss"], steps[-1]["loss"]
            results["runs"][name] = row
            print(f"{name:<28} {row.get('steps_per_second', float('nan')):6.3f} steps/s  "
                  f"{row.get('samples_per_second', float('nan')):6.2f} samples/s  peak RSS {row['peak_rss_mib']:7.0f} MiB  "
                  f"(wall {wall:.0f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
