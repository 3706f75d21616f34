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


# ---------------------------------------------------------------------------------------- detect
def read_rows(path: Path) -> list[dict]:
    from deepvrm.cli.results import ResultWriter  # noqa: F401  (the format's own module)

    if path.suffix == ".csv":
        import csv

        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(path.open(newline=""))]
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_rows(got: list[dict], expected: list[dict]) -> None:
    assert [(r["path"], r.get("label"), r.get("error")) for r in got] == [(r["path"], r.get("label"), r.get("error")) for r in expected]
    assert [float(r.get("score", "nan")) for r in got] == pytest.approx([float(r.get("score", "nan")) for r in expected], abs=1e-6, nan_ok=True)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_parts_left_by_an_interrupted_multi_process_run_are_resumed(tmp_path, tiny_model_dir, labelled_folder, capsys, suffix):
    """One process resuming after an interrupted multi-process run: the rows of the output and of
    the other processes' part files count as scored, their error rows are retried, the parts go."""
    from deepvrm.cli.detect import main as detect_main
    from deepvrm.cli.results import ResultWriter, leftover_parts, part_path

    images = sorted(str(p) for p in labelled_folder.rglob("*.png"))
    out = tmp_path / f"out{suffix}"
    writer = ResultWriter(str(out), append=False)
    writer.write({"path": images[0], "label": "real", "score": 0.25})
    writer.close()
    part = part_path(str(out), 1)
    writer = ResultWriter(part, append=False)
    writer.write({"path": images[1], "label": "fake", "score": 0.75})
    writer.write({"path": images[2], "error": "model failed on it: out of memory"})  # retried
    writer.close()
    assert leftover_parts(str(out)) == [part] and Path(part).name == f".out{suffix}.part-1{suffix}"

    assert detect_main([str(labelled_folder), "--model", str(tiny_model_dir), "-o", str(out), "-q", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Skipping 2 file(s) already scored" in err
    assert not os.path.exists(part) and leftover_parts(str(out)) == []
    rows = read_rows(out)
    assert [r["path"] for r in rows[:2]] == images[:2] and [float(r["score"]) for r in rows[:2]] == [0.25, 0.75]
    assert sorted(r["path"] for r in rows) == images and len(rows) == len(images)  # each once, the error row retried
    assert [r["path"] for r in rows if "error" in r] == [str(labelled_folder / "mj" / "fake" / "broken.png")]


@pytest.mark.slow  # three launches of a fresh Python with torch (~10 s each on 2 cores)
def test_detect_on_two_processes_writes_the_rows_of_one(tmp_path, tiny_model_dir, labelled_folder, capsys):
    from deepvrm.cli.detect import main as detect_main
    from deepvrm.cli.results import leftover_parts, part_path

    common = [labelled_folder, tmp_path / "no-such-*.png", "--model", tiny_model_dir, "--batch-size", "2", "--no-progress"]
    one = tmp_path / "one.csv"
    assert detect_main([*map(str, common), "-o", str(one)]) == 1
    table_one = capsys.readouterr().out
    expected = read_rows(one)
    assert len(expected) == 12 and sum("error" in r for r in expected) == 2  # the pattern and broken.png

    two = tmp_path / "two.csv"
    done = launch(["detect", *common, "-o", two], tmp_path, tmp_path / "hf", TWO_PROCESSES)
    assert done.returncode == 1, done.stderr
    assert "scoring 11 file(s) on 2 processes (cpu)" in done.stderr
    assert_same_rows(read_rows(two), expected)  # every row once, in the order one process writes them
    assert leftover_parts(str(two)) == []
    # The table, printed by the main process only, in input order.
    assert [line.split()[:2] for line in done.stdout.splitlines()] == [line.split()[:2] for line in table_one.splitlines()]

    # Interrupted mid-run: the main process's rows in the output, another's in its part file, an
    # error row among them. Two processes resume: nothing scored twice, the error retried.
    from deepvrm.cli.results import ResultWriter

    errors = [r for r in read_rows(two) if "error" in r]
    scored = [{**r, "score": float(r["score"])} for r in read_rows(two) if "error" not in r]
    for path, chosen in ((str(two), errors[:1] + scored[:2]), (part_path(str(two), 1), scored[2:4] + [{"path": scored[4]["path"], "error": "interrupted"}])):
        writer = ResultWriter(path, append=False)
        for row in chosen:
            writer.write(row)
        writer.close()
    done = launch(["detect", *common, "-o", two], tmp_path, tmp_path / "hf", TWO_PROCESSES)
    assert done.returncode == 1, done.stderr
    assert "Skipping 4 file(s) already scored" in done.stderr  # 2 scored rows in the output, 2 in the part
    assert "scoring 7 file(s) on 2 processes" in done.stderr  # 11 images - 4; the error rows' again
    resumed = read_rows(two)
    assert leftover_parts(str(two)) == []
    assert sorted(r["path"] for r in resumed) == sorted(r["path"] for r in expected)  # each path once
    by_path = {r["path"]: r for r in expected}
    assert_same_rows(resumed, [by_path[r["path"]] for r in resumed])
