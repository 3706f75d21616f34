"""Evaluation and detection across processes: `accelerate launch` starts several copies of the
command, each scores its share, the main process merges; the outputs equal one process's.

The launches are real (torchrun under accelerate, two CPU processes, gloo), offline, and read no
accelerate config file: HF_HOME is a fresh folder and every setting is a flag.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepvrm.cli.evaluate import main as evaluate_main
from deepvrm.inference.processes import Processes, launched_processes, unshare


# ---------------------------------------------------------------------------------------- one process
def test_one_process_without_a_launcher(monkeypatch):
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(name, raising=False)
    assert launched_processes() == 1
    processes = Processes.start("auto")
    assert not processes.distributed and processes.is_main and (processes.count, processes.index) == (1, 0)
    assert processes.share(range(5)) == [0, 1, 2, 3, 4]
    assert processes.gather([(0, "a")]) == [(0, "a")] and processes.broadcast({"x": 1}) == {"x": 1}
    assert processes.device("auto") == "auto" and processes.device("cuda:1") == "cuda:1"
    assert processes.exit_status(1) == 1
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")  # `accelerate launch --cpu` (one process)
    assert processes.device("auto") == "cpu" and processes.device("cuda") == "cuda"


def test_shares_interleave_and_merge_back_in_order():
    class Fake(Processes):
        def __init__(self, index, count):
            super().__init__()
            self._index, self._count = index, count

        index = property(lambda self: self._index)
        count = property(lambda self: self._count)

    items = list(range(7))
    shares = [Fake(i, 3).share(items) for i in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]  # every part of the list in every share
    gathered = [(i, f"v{i}") for share in shares for i in share]  # process order, as gather gives them
    assert unshare(gathered, 7) == [f"v{i}" for i in range(7)]


# ---------------------------------------------------------------------------------------- launches
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(args: list, cwd: Path, home: Path, flags: list[str]) -> subprocess.CompletedProcess:
    """`accelerate launch FLAGS -m deepvrm.cli ARGS` offline, on CPUs, with no accelerate config file."""
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_CONFIG_FILE"):
        env.pop(name, None)
    command = [sys.executable, "-m", "accelerate.commands.launch", *flags, "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--main_process_port", str(_free_port()), "-m", "deepvrm.cli", *map(str, args)]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


TWO_PROCESSES = ["--multi_gpu", "--num_processes", "2"]  # torchrun; CPUs (gloo) when no GPU is visible


def noise(path: Path, seed: int, size: int = 20) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def labelled_folder(tmp_path) -> Path:
    """Two generators of real/fake images (per-generator rows) and one file that is not an image."""
    data = tmp_path / "data"
    seed = 0
    for generator in ("sd", "mj"):
        for label in ("real", "fake"):
            for i in range(3 if generator == "sd" else 2):
                noise(data / generator / label / f"{i}.png", seed)
                seed += 1
    (data / "mj" / "fake" / "broken.png").write_bytes(b"not a png")
    return data


def assert_same_metrics(got, expected):
    """The same rows, keys, counts and nulls; rates equal to float noise (batches differ in size)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and list(got) == list(expected)
        for key in expected:
            assert_same_metrics(got[key], expected[key])
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, abs=1e-6)
    else:
        assert got == expected


@pytest.mark.slow  # two launches of a fresh Python with torch (~10 s each on 2 cores)
def test_evaluate_on_two_processes_gives_the_metrics_of_one(tmp_path, tiny_model_dir, labelled_folder, capsys):
    common = [labelled_folder, "--model", tiny_model_dir, "--perturb", "jpeg:90", "--batch-size", "2", "--no-progress"]
    one = tmp_path / "one.json"
    assert evaluate_main([*map(str, common), "-o", str(one), "--scores", str(tmp_path / "one.jsonl")]) == 1  # one failed image
    capsys.readouterr()
    expected = json.loads(one.read_text())
    assert list(expected) == ["data", "data/mj", "data/sd", "perturbations"] and expected["data"]["n_failed"] == 1

    two = tmp_path / "two.json"
    done = launch([f"evaluate", *common, "-o", two, "--scores", tmp_path / "two.jsonl"], tmp_path, tmp_path / "hf", TWO_PROCESSES)
    assert done.returncode == 1, done.stderr  # the main process's status: one image failed
    assert "scoring 11 image(s) on 2 processes (cpu)" in done.stderr
    assert done.stderr.count("broken.png: not an image") == 1  # reported once, by the main process
    assert done.stdout.count("ROC-AUC") == 1  # one table
    assert_same_metrics(json.loads(two.read_text()), expected)
    rows = [json.loads(line) for line in (tmp_path / "two.jsonl").read_text().splitlines()]
    expected_rows = [json.loads(line) for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    assert [(r["path"], r["perturbation"], "error" in r) for r in rows] == [(r["path"], r["perturbation"], "error" in r) for r in expected_rows]
    assert_same_metrics({str(i): r.get("score") for i, r in enumerate(rows)}, {str(i): r.get("score") for i, r in enumerate(expected_rows)})

    # `accelerate launch --cpu --num_processes 2`: accelerate runs one process there (its CPU
    # launcher spreads processes through mpirun only); the metrics are the same all the same.
    cpu = tmp_path / "cpu.json"
    done = launch(["evaluate", *common, "-o", cpu], tmp_path, tmp_path / "hf", ["--cpu", "--num_processes", "2"])
    assert done.returncode == 1, done.stderr
    assert_same_metrics(json.loads(cpu.read_text()), expected)
