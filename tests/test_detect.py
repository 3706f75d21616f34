"""`deepvrm detect`: bad and odd inputs, exit codes, output rows, resume, batching.

Every image is built in the test; the model is the random tiny preset (scores near 0.5)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from deepvrm.cli import detect
from deepvrm.cli.detect import collect_inputs, main
from deepvrm.inference.detector import Detector

# The official release's folder layout, as the core tests write it (a 28-layer tiny-width model).
from test_official_checkpoint import _write_official, reference_model  # noqa: F401,E402  (reference_model: a fixture)


# ---------------------------------------------------------------------------------------- builders
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int, height: int) -> bytes:
    """A header claiming width x height pixels and no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"")) + _png_chunk(b"IEND", b"")


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def rotated_jpeg() -> bytes:
    image = noise(40, 20, seed=3)
    exif = image.getexif()
    exif[0x0112] = 6
    return encoded(image, "JPEG", exif=exif)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (24, 24), c) for c in ((200, 0, 0), (0, 200, 0))]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])


def palette_png() -> bytes:
    image = noise(30, 30, seed=4).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encoded(image, "PNG")


# name -> bytes of every readable odd image `detect` must score.
GOOD = {
    "grey.png": lambda: encoded(noise(40, 30).convert("L"), "PNG"),
    "sixteen-bit.png": lambda: encoded(Image.fromarray((np.arange(32 * 32).reshape(32, 32) * 60).astype(np.uint16)), "PNG"),
    "palette.png": palette_png,
    "rgba.png": lambda: encoded(noise(30, 30).convert("RGBA"), "PNG"),
    "la.png": lambda: encoded(noise(30, 30).convert("LA"), "PNG"),
    "cmyk.jpg": lambda: encoded(noise(30, 30).convert("CMYK"), "JPEG"),
    "animated.gif": animated_gif,
    "exif-rotated.jpg": rotated_jpeg,
    "one-pixel.png": lambda: encoded(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"),
    "wide strip.png": lambda: encoded(noise(1200, 2), "PNG"),  # aspect ratio 600: padded for the processor
    "tall.webp": lambda: encoded(noise(3, 700), "WEBP", lossless=True),
    "naïve 写真 (1).JPG": lambda: encoded(noise(50, 40), "JPEG"),
}

_NOISY = noise(64, 64, seed=1)
# name -> (bytes, a word the error must contain)
BAD = {
    "empty.jpg": (b"", "empty file"),
    "truncated.jpg": (encoded(_NOISY, "JPEG")[:600], "truncated"),
    "truncated.png": (encoded(_NOISY, "PNG")[:3000], "truncated"),
    "not-an-image.png": (b"<html>hello</html>\n", "not an image"),
    "random-bytes.jpg": (np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8).tobytes(), "not an image"),
    "bomb.png": (bomb_png(30_000, 30_000), "decompression bomb"),
}


@pytest.fixture(scope="module")
def odd_dir(tmp_path_factory):
    """A folder holding every odd readable image and every kind of bad file."""
    root = tmp_path_factory.mktemp("odd")
    for name, make in GOOD.items():
        (root / name).write_bytes(make())
    for name, (data, _) in BAD.items():
        (root / name).write_bytes(data)
    os.symlink(root / "was-deleted.png", root / "dangling.png")
    (root / "folder.jpg").mkdir()  # a folder named like an image, with nothing inside
    (root / "notes.txt").write_text("not searched: no image extension")
    return root


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_rows(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


# ---------------------------------------------------------------------------------------- bad and odd inputs
def test_every_readable_image_is_scored_and_every_bad_one_reported(odd_dir, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    code, stdout, stderr = run([odd_dir, "--model", tiny_model_dir, "--output", out, "--batch-size", 4], capsys)
    assert code == 1  # some failed, the rest scored
    rows = {os.path.basename(r["path"]): r for r in read_rows(out)}
    assert set(rows) == set(GOOD) | set(BAD) | {"dangling.png", "folder.jpg"}  # notes.txt not searched
    for name in GOOD:
        row = rows[name]
        assert "error" not in row, (name, row)
        assert 0.0 <= row["score"] <= 1.0
        assert row["label"] == ("fake" if row["score"] >= 0.5 else "real")
    expected = {name: word for name, (_, word) in BAD.items()}
    expected.update({"dangling.png": "dangling symbolic link", "folder.jpg": "is a folder"})
    for name, word in expected.items():
        assert set(rows[name]) == {"path", "error"}, name
        assert word in rows[name]["error"], (name, rows[name]["error"])
        assert "\n" not in rows[name]["error"]
    # The table shows every file, with the reason on failed rows.
    assert "P(fake)" in stdout.splitlines()[0]
    assert sum("ERROR" in line for line in stdout.splitlines()) == len(expected)
    assert f"Scored {len(GOOD)} image(s)" in stderr and f"{len(expected)} could not be scored" in stderr


def test_explicit_files_globs_and_names(tmp_path, tiny_model_dir, capsys):
    (tmp_path / "a").mkdir()
    noise(20, 20).save(tmp_path / "a" / "x.png")
    noise(20, 20, seed=1).save(tmp_path / "a" / "y.png")
    (tmp_path / "image.data").write_bytes(encoded(noise(20, 20, seed=2), "PNG"))  # explicit: any extension
    (tmp_path / "a" / "dir.png").mkdir()
    spaced = tmp_path / "a" / "with space é.png"
    noise(20, 20, seed=5).save(spaced)
    (tmp_path / "a" / "._x.png").write_bytes(b"\x00\x05\x16\x07")  # a macOS resource fork: hidden, skipped
    (tmp_path / "a" / ".thumbs").mkdir()
    noise(20, 20, seed=6).save(tmp_path / "a" / ".thumbs" / "t.png")
    assert [os.path.basename(p) for p in collect_inputs([str(tmp_path / "a" / "._x.png")])[0]] == ["._x.png"]
    paths, unmatched = collect_inputs(
        [str(tmp_path / "image.data"), str(tmp_path / "a" / "*.png"), str(tmp_path / "a"), str(tmp_path / "missing.png")]
    )
    names = [os.path.basename(p) for p in paths]
    assert names == ["image.data", "dir.png", "with space é.png", "x.png", "y.png"]  # no duplicates
    assert unmatched == [str(tmp_path / "missing.png")]

    out = tmp_path / "out.jsonl"
    code, stdout, _ = run([tmp_path / "image.data", tmp_path / "a", "--model", tiny_model_dir, "-o", out], capsys)
    assert code == 1  # dir.png is a folder
    rows = {r["path"]: r for r in read_rows(out)}
    assert "score" in rows[str(tmp_path / "image.data")]
    assert "score" in rows[str(spaced)]  # the non-ASCII name survives the JSON round trip
    assert "is a folder" in rows[str(tmp_path / "a" / "dir.png")]["error"]
    assert "with space é.png" in stdout


def test_exit_0_and_csv_output(tmp_path, tiny_model_dir, capsys):
    for i in range(3):
        noise(30, 20, seed=i).save(tmp_path / f"{i}.png")
    out = tmp_path / "results.csv"
    code, _, _ = run([tmp_path, "--model", tiny_model_dir, "-o", out, "--threshold", "0"], capsys)
    assert code == 0
    with open(out, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 3 and all(r["label"] == "fake" and r["error"] == "" for r in rows)  # threshold 0: all fake
    assert all(0 <= float(r["score"]) <= 1 for r in rows)


def test_usage_errors_exit_2(tmp_path, tiny_model_dir, capsys, monkeypatch):
    image = tmp_path / "x.png"
    noise(10, 10).save(image)
    empty = tmp_path / "empty"
    empty.mkdir()
    no_config = tmp_path / "not-a-model"
    no_config.mkdir()
    cases = [
        ([empty, "--model", tiny_model_dir], "no inputs"),
        ([tmp_path / "nothing.png", "--model", tiny_model_dir], "no inputs"),
        ([image, "--model", tmp_path / "no-such-model"], "no such model folder"),
        ([image, "--model", no_config], "no config.json"),
        ([image, "--model", tiny_model_dir, "--threshold", "1.5"], "--threshold"),
        ([image, "--model", tiny_model_dir, "--batch-size", "0"], "--batch-size"),
        ([image, "--model", tiny_model_dir, "--output", tmp_path], "is a folder"),
    ]
    for argv, message in cases:
        code, _, err = run(argv, capsys)
        assert code == 2, argv
        assert message in err, (argv, err)
    assert run([], capsys)[0] == 2  # argparse: PATH is required
    assert run(["--help"], capsys)[0] == 0
    if not __import__("torch").cuda.is_available():
        code, _, err = run([image, "--model", tiny_model_dir, "--device", "cuda"], capsys)
        assert code == 2 and "CUDA is not available" in err
    # No --model and no demo model installed (a wheel install): where it is expected, how to get it.
    monkeypatch.setattr("deepvrm.inference.sources.DEFAULT_MODEL", str(tmp_path / "examples" / "demo-model"))
    code, _, err = run([image], capsys)
    assert code == 2 and "no model given and the demo model is not installed" in err
    assert str(tmp_path / "examples" / "demo-model") in err and "clone" in err
    assert "--model Kaiqing/Deep-VRM-Qwen-25-VL-7B" in err


def test_default_model_points_into_the_repository():
    from pathlib import Path

    from deepvrm.inference.sources import DEFAULT_MODEL

    repo = Path(__file__).resolve().parent.parent
    assert Path(DEFAULT_MODEL) == repo / "examples" / "demo-model"


def test_without_model_the_demo_model_is_announced_once_as_no_real_detector(tmp_path, capsys):
    image = tmp_path / "x.png"
    noise(16, 16).save(image)
    code, out, err = run([image, "--no-progress"], capsys)
    assert code == 0 and "x.png" in out
    assert err.count("demo model") == 1 and "not a real-world detector" in err
    assert "at chance" in err and "--model Kaiqing/Deep-VRM-Qwen-25-VL-7B" in err
    from safetensors import safe_open

    from deepvrm.inference.sources import DEFAULT_MODEL

    with safe_open(f"{DEFAULT_MODEL}/model.safetensors", "pt") as weights:
        size = sum(int(np.prod(weights.get_slice(k).get_shape())) for k in weights.keys())
    assert f"{size / 1e6:.1f} M-parameter" in err
    # Given a model, nothing is said about the demo model.
    code, _, err = run([image, "--model", DEFAULT_MODEL, "--no-progress"], capsys)
    assert code == 0 and "demo model" not in err
    # From Python: Detector.from_pretrained() without a model says the same, once.
    detector = Detector.from_pretrained(device="cpu")
    err = capsys.readouterr().err
    assert err.count("not a real-world detector") == 1 and detector.score_images([noise(16, 16)]).shape == (1,)


def test_a_mistyped_folder_is_reported_as_missing_not_as_a_network_failure(tmp_path, tiny_model_dir, capsys, monkeypatch):
    image = tmp_path / "x.png"
    noise(10, 10).save(image)
    monkeypatch.chdir(tmp_path)
    code, _, err = run([image, "--model", "tiny2"], capsys)  # meant ./tiny, say: not a Hub id's form
    assert code == 2 and "no such model folder: tiny2" in err and "owner/name" in err
    assert "connect" not in err.lower() and "huggingface.co" not in err
    # owner/name that is no folder here is tried on the Hub; offline, the error says why it was tried.
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    code, _, err = run([image, "--model", "models/tiny2"], capsys)
    assert code == 2 and "no folder models/tiny2 here, so it was tried as a Hub id" in err


# ---------------------------------------------------------------------------------------- output and resume
_SCORE_PATHS = Detector.score_paths


class Spy:
    """Wraps Detector.score_paths to record what is scored (and optionally crash after N rows)."""

    def __init__(self, monkeypatch, crash_after: int | None = None, crash=KeyboardInterrupt):
        self.scored: list[str] = []
        original = _SCORE_PATHS  # not a previous spy's wrapper
        spy = self

        def score_paths(detector, paths, transform=None):
            paths = list(paths)
            spy.scored += paths
            for index, result in enumerate(original(detector, paths, transform)):
                if crash_after is not None and index == crash_after:
                    raise crash()
                yield result

        monkeypatch.setattr(Detector, "score_paths", score_paths)


def test_resume_skips_scored_rows_and_retries_failed_ones(tmp_path, tiny_model_dir, capsys, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.png", "b.png"):
        noise(20, 20, seed=len(name)).save(data / name)
    (data / "c.png").write_bytes(b"not yet an image")
    out = tmp_path / "out.jsonl"
    argv = [data, "--model", tiny_model_dir, "-o", out]

    assert run(argv, capsys)[0] == 1
    first = {os.path.basename(r["path"]): r for r in read_rows(out)}
    assert "error" in first["c.png"] and "score" in first["a.png"]

    noise(20, 20, seed=9).save(data / "c.png", format="PNG")  # fixed
    with open(out, "a", encoding="utf-8") as file:
        file.write('{"path": "' + str(data / "b.png") + '", "lab')  # a crash mid-row on a previous run
    spy = Spy(monkeypatch)
    code, _, err = run(argv, capsys)
    assert code == 0
    assert [os.path.basename(p) for p in spy.scored] == ["c.png"]  # only the failed one is retried
    assert "Skipping 2 file(s) already scored" in err
    rows = read_rows(out)  # every line parses: the half-written line is gone
    assert sorted(os.path.basename(r["path"]) for r in rows) == ["a.png", "b.png", "c.png"]  # no duplicates
    assert all("score" in r for r in rows)
    assert {os.path.basename(r["path"]): r for r in rows}["a.png"] == first["a.png"]

    spy = Spy(monkeypatch)
    assert run(argv, capsys)[0] == 0
    assert spy.scored == [] and len(read_rows(out)) == 3


def test_rows_are_written_as_they_finish(tmp_path, tiny_model_dir, capsys, monkeypatch):
    for i in range(5):
        noise(20, 20, seed=i).save(tmp_path / f"{i}.png")
    out = tmp_path / "out.jsonl"
    Spy(monkeypatch, crash_after=2)  # interrupted after the first two rows
    code, _, err = run([tmp_path, "--model", tiny_model_dir, "-o", out, "--batch-size", 2], capsys)
    assert code == 130 and "rerun to resume" in err
    assert [os.path.basename(r["path"]) for r in read_rows(out)] == ["0.png", "1.png"]
    spy = Spy(monkeypatch)
    assert run([tmp_path, "--model", tiny_model_dir, "-o", out], capsys)[0] == 0
    assert [os.path.basename(p) for p in spy.scored] == ["2.png", "3.png", "4.png"]
    assert sorted(os.path.basename(r["path"]) for r in read_rows(out)) == [f"{i}.png" for i in range(5)]


def test_progress_bar_only_on_long_runs_or_terminals(tmp_path, tiny_model_dir, capsys, monkeypatch):
    for i in range(3):
        noise(20, 20, seed=i).save(tmp_path / f"{i}.png")
    _, _, err = run([tmp_path, "--model", tiny_model_dir], capsys)
    assert "img/s" not in err and "detect:" not in err  # short run, stderr not a terminal
    monkeypatch.setattr(detect, "PROGRESS_MIN_IMAGES", 2)
    _, stdout, err = run([tmp_path, "--model", tiny_model_dir], capsys)
    assert "detect: 100%" in err and "3/3" in err
    assert stdout.count(".png") == 3  # the table still goes to stdout, whole
    _, _, err = run([tmp_path, "--model", tiny_model_dir, "--no-progress"], capsys)
    assert "detect:" not in err


# ---------------------------------------------------------------------------------------- batching
def test_batches_match_single_images_and_the_pipeline(tmp_path, tiny_model_dir):
    from transformers import pipeline

    sizes = [(40, 30), (64, 64), (300, 20), (1, 1), (90, 120), (1000, 3), (33, 77), (20, 20), (50, 60)]
    paths = []
    for i, (w, h) in enumerate(sizes):
        path = tmp_path / f"{i}.png"
        noise(w, h, seed=i).save(path)
        paths.append(str(path))
    single = Detector.from_pretrained(tiny_model_dir, batch_size=1, workers=0)  # all in this thread
    batched = Detector.from_pretrained(tiny_model_dir, batch_size=8, workers=3)  # threads prepare ahead
    one = np.array([r.score for r in single.score_paths(paths)])
    results = list(batched.score_paths(paths))
    assert [r.path for r in results] == paths  # in input order whatever thread finished first
    eight = np.array([r.score for r in results])
    assert np.allclose(one, eight, atol=1e-5)  # mixed token counts in one batch (left padding)
    assert len(set(np.round(one, 6))) > 1  # the scores depend on the image

    # The same numbers as the image-classification pipeline (for images it accepts as they are).
    classify = pipeline("image-classification", model=str(tiny_model_dir))
    for path, score in list(zip(paths, one))[:3]:
        result = {r["label"]: r["score"] for r in classify(path)}
        assert result["fake"] == pytest.approx(score, abs=1e-5)
    # score_images gives the same for in-memory images.
    images = [Image.open(p) for p in paths[:4]]
    assert np.allclose(batched.score_images(images), one[:4], atol=1e-5)


def test_a_failing_forward_pass_fails_only_its_image(tmp_path, tiny_model_dir, monkeypatch):
    paths = []
    for i, size in enumerate([(20, 20), (40, 40), (1000, 3), (30, 30)]):
        path = tmp_path / f"{i}.png"
        noise(*size, seed=i).save(path)
        paths.append(str(path))
    detector = Detector.from_pretrained(tiny_model_dir, batch_size=4)
    original = detector._forward
    calls = []

    def forward(prepared):
        # Any batch fails (a simulated out-of-memory); alone, only the strip (a 2x80 grid) fails.
        calls.append(len(prepared))
        if len(prepared) > 1 or prepared[0][1].tolist() != [[1, 8, 8]]:
            raise RuntimeError("simulated failure")
        return original(prepared)

    monkeypatch.setattr(detector, "_forward", forward)
    results = list(detector.score_paths(paths))
    assert calls == [4, 1, 1, 1, 1]
    assert [r.ok for r in results] == [True, True, False, True]
    assert results[2].error == "model failed on it: RuntimeError: simulated failure"
    assert results[2].to_row() == {"path": paths[2], "error": results[2].error}


def test_official_layout_folder_is_scored_at_the_papers_pixel_budget(reference_model, tmp_path):
    """An official-release folder (config `qwen2_5_vl`, legacy weight names, no image processor of
    ours): scored as Deep-VRM at 512x512 pixels, as the chat model would answer."""
    import torch

    from deepvrm.inference.images import open_image
    from deepvrm.configuration.init_model import build_processor
    from deepvrm.processing_deepvrm import DeepVRMImageProcessor

    model = reference_model
    folder = _write_official(model, tmp_path / "official")
    image = tmp_path / "x.png"
    noise(64, 48, seed=3).save(image)
    detector = Detector.from_pretrained(folder, batch_size=2)
    assert detector.model.config.injection_layer == 16
    assert detector.image_processor.size["longest_edge"] == 512 * 512
    score = next(detector.score_paths([str(image)])).score

    processor = build_processor(model.config)
    processor.image_processor = DeepVRMImageProcessor.from_config(detector.model.config)
    inputs = processor.detection_inputs([open_image(image)])
    with torch.no_grad():
        answers = model(**inputs).logits[0, -1, model.config.answer_token_ids]
    assert torch.softmax(answers.float(), -1)[1].item() == pytest.approx(score, abs=1e-4)


# ---------------------------------------------------------------------------------------- the real command
@pytest.mark.slow
def test_command_line_entry_point(tmp_path, tiny_model_dir):
    # One subprocess (importing torch and transformers costs seconds): the exit status reaches the shell.
    noise(20, 20).save(tmp_path / "ok.png")
    (tmp_path / "bad.jpg").write_bytes(b"")
    out = tmp_path / "out.jsonl"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "deepvrm.cli", "detect", str(tmp_path), "--model", str(tiny_model_dir), "-o", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "empty file" in result.stdout
    assert len(read_rows(out)) == 2


# ---------------------------------------------------------------------------------------- non-finite scores
def nan_model_folder(source, target):
    """A copy of the model folder `source` whose final layer norm weight is NaN: every score is NaN."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target)
    weights = load_file(os.path.join(target, "model.safetensors"))
    weights["model.norm.weight"][:] = float("nan")
    save_file(weights, os.path.join(target, "model.safetensors"), metadata={"format": "pt"})
    return target


@pytest.fixture(scope="module")
def nan_model_dir(tiny_model_dir, tmp_path_factory):
    return nan_model_folder(tiny_model_dir, tmp_path_factory.mktemp("nan-model") / "model")


def _strict_json(line: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


def test_nan_scores_are_error_rows_not_verdicts(tmp_path, nan_model_dir, capsys):
    for i in range(3):
        noise(20, 20, seed=i).save(tmp_path / f"{i}.png")
    for name in ("out.jsonl", "out.csv"):
        out = tmp_path / "results" / name
        code, stdout, stderr = run([tmp_path, "--model", nan_model_dir, "-o", out, "--no-progress"], capsys)
        assert code == 1  # nothing was scored
        assert not re.search(r"(real|fake)\s+nan", stdout)  # no "real  nan" verdict
        assert stdout.count("ERROR") == 3 and "Scored 0 image(s)" in stderr and "3 could not be scored" in stderr
        if name.endswith(".jsonl"):
            rows = [_strict_json(line) for line in open(out, encoding="utf-8")]  # valid JSON: no NaN
        else:
            rows = list(csv.DictReader(open(out, newline="", encoding="utf-8")))
            assert all(r["score"] == "" and r["label"] == "" for r in rows)
        assert len(rows) == 3 and all("non-finite score" in r["error"] for r in rows)
    # From Python: the same check for every user of the Detector.
    detector = Detector.from_pretrained(nan_model_dir)
    result = next(detector.score_paths([str(tmp_path / "0.png")]))
    assert not result.ok and result.score is None and result.label is None and "non-finite" in result.error
    with pytest.raises(ValueError, match="non-finite"):
        detector.score_images([noise(16, 16)])


def test_evaluate_counts_nan_scores_as_failed(tmp_path, nan_model_dir, capsys):
    from deepvrm.cli import evaluate

    for label in ("real", "fake"):
        (tmp_path / "bench" / label).mkdir(parents=True)
        for i in range(2):
            noise(16, 16, seed=i).save(tmp_path / "bench" / label / f"{i}.png")
    metrics, scores = tmp_path / "metrics.json", tmp_path / "scores.jsonl"
    argv = [tmp_path / "bench", "--model", nan_model_dir, "-o", metrics, "--scores", scores, "--no-progress"]
    code = evaluate.main([str(a) for a in argv])
    _, err = capsys.readouterr()
    assert code == 1 and "non-finite score" in err
    result = _strict_json(metrics.read_text())["bench"]  # valid JSON
    assert result["n_failed"] == 4 and result["n_real"] == 0 and result["n_fake"] == 0 and result["accuracy"] is None
    rows = [_strict_json(line) for line in open(scores, encoding="utf-8")]
    assert len(rows) == 4 and all("error" in r and "score" not in r for r in rows)


# ---------------------------------------------------------------------------------------- output files: CSV, resume, refusals
from deepvrm.cli.results import CSV_HEADER, csv_cell, from_csv_cell  # noqa: E402

# Names a hostile folder holds: formulas, a leading quote or backslash, control characters, bytes that
# are not UTF-8 (os.fsdecode: the str os.listdir gives for them).
HOSTILE = [
    '=HYPERLINK("evil.example?c=1","click").png', "+1.png", "-2.png", "@SUM(A1).png", "\ttab.png",
    "'quoted.png", "''twice.png", "'\\looks-escaped.png", "back\\slash.png", "new\nline.png",
    "\x1b[31mred.png", "x\u202egnp.png", os.fsdecode(b"caf\xe9.png"), "plain é 写真.png",
]  # fmt: skip


def test_csv_cells_are_formula_safe_and_reversible():
    for text in HOSTILE + ["", "'", "=", "\rx", "\\\\server\\share\\a.png", "=a\\b\n", "\ud800"]:
        cell = csv_cell(text)
        assert from_csv_cell(cell) == text, (text, cell)
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
        assert "\n" not in cell and "\r" not in cell and "\x1b" not in cell
        cell.encode("utf-8")  # every cell is UTF-8 text
    assert csv_cell("=HYPERLINK(1).png") == "'=HYPERLINK(1).png"  # OWASP: a leading quote, nothing else
    assert csv_cell("photos/a.png") == "photos/a.png"
    assert csv_cell(os.fsdecode(b"caf\xe9.png")) == "'\\caf\\xe9.png"


def _csv_rows(path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file, which must be strict UTF-8 with one header."""
    text = open(path, "rb").read().decode("utf-8")
    assert text.endswith("\r\n")
    lines = text.split("\r\n")[:-1]
    rows = [next(csv.reader([line], strict=True)) for line in lines]
    assert all(len(r) == 4 for r in rows)
    return lines[0], rows[1:]


def test_csv_resume_after_an_error_row_keeps_one_header_and_every_row_exact(tmp_path, tiny_model_dir, capsys, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    for i, name in enumerate(HOSTILE):
        noise(20, 20, seed=i).save(os.path.join(os.fsencode(data), os.fsencode(name)), format="PNG")
    (data / "broken.png").write_bytes(b"not yet an image")
    monkeypatch.chdir(data)  # relative names: the cells begin with the names themselves
    names = HOSTILE + ["broken.png"]
    out = tmp_path / "results.csv"
    argv = ["--model", tiny_model_dir, "-o", out, "--no-progress", "-q", "--"] + names  # "--": -2.png is a name
    assert run(argv, capsys)[0] == 1
    header, rows = _csv_rows(out)
    assert header == CSV_HEADER and len(rows) == len(names)
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row)
    assert [from_csv_cell(r[0]) for r in rows] == names  # every path exact, the non-UTF-8 one included
    first = {from_csv_cell(r[0]): r for r in rows}
    assert first["broken.png"][3] != "" and first['=HYPERLINK("evil.example?c=1","click").png'][0].startswith("'=")

    noise(20, 20, seed=99).save(data / "broken.png", format="PNG")  # fixed
    spy = Spy(monkeypatch)
    assert run(argv, capsys)[0] == 0
    assert spy.scored == ["broken.png"]  # the error row is retried, nothing else is scored again
    header, rows = _csv_rows(out)
    assert header == CSV_HEADER and sorted(from_csv_cell(r[0]) for r in rows) == sorted(names)  # one row each
    again = {from_csv_cell(r[0]): r for r in rows}
    assert all(again[n] == first[n] for n in HOSTILE)  # kept rows unchanged, cell for cell
    assert float(again["broken.png"][2]) >= 0 and again["broken.png"][3] == ""

    spy = Spy(monkeypatch)
    assert run(argv, capsys)[0] == 0 and spy.scored == []  # every path recognised, so none scored twice
    assert len(_csv_rows(out)[1]) == len(names)


@pytest.mark.parametrize("name", ["out.csv", "out.jsonl"])
def test_a_cut_off_last_line_is_rescored_not_taken_as_a_result(tmp_path, tiny_model_dir, capsys, monkeypatch, name):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        noise(20, 20, seed=i).save(data / f"{i}.png")
    out = tmp_path / name
    argv = [data, "--model", tiny_model_dir, "-o", out, "--no-progress"]
    assert run(argv, capsys)[0] == 0
    whole = out.read_bytes()
    last = whole[: -1].rsplit(b"\n", 1)[1]  # the last row, without its line break
    scored_last = str(data / "3.png")

    def rows_of(path):
        if name.endswith(".csv"):
            header, rows = _csv_rows(path)
            assert header == CSV_HEADER
            return {from_csv_cell(r[0]): r[2] for r in rows}
        return {r["path"]: repr(r["score"]) for r in map(_strict_json, open(path, encoding="utf-8"))}

    expected = rows_of(out)
    cut_in_score = last.index(b"0.") + 4  # a score cut to two digits still reads as a number
    for cut in (len(whole) - len(last) - 1 + cut_in_score, len(whole) - 1 - (name.endswith(".csv"))):
        out.write_bytes(whole[:cut])  # what a SIGKILL mid-write leaves (the second: only the line break lost)
        spy = Spy(monkeypatch)
        assert run(argv, capsys)[0] == 0
        assert spy.scored == [scored_last]  # rescored, not read back shorter
        assert rows_of(out) == expected  # parses, one row per image, the same full-precision scores
        assert out.read_bytes().count(b"\n") == whole.count(b"\n")


def test_output_onto_a_file_detect_did_not_write_is_refused(tmp_path, tiny_model_dir, capsys, monkeypatch):
    image = tmp_path / "x.png"
    noise(20, 20).save(image)
    others = {
        "photo.png": encoded(noise(30, 30, seed=1), "PNG"),
        "photo.jpg": encoded(noise(30, 30, seed=2), "JPEG"),
        "train.jsonl": b'{"messages": [{"role": "user", "content": "<image>"}], "images": ["a.png"]}\n',
        "train.json": b'[\n  {"messages": [], "images": ["a.png"]}\n]\n',
        "one-line.json": b'{"messages": [], "images": ["a.png"]}',  # no line break at all
        "notes.txt": b"hello",
        "table.csv": b"name,value\r\n=1+1,2\r\n",
        "scores.jsonl": b'{"path": "a.png", "dataset": "d", "subset": null, "label": 1, "perturbation": null, "score": 0.5}\n',
        "detect-csv.jsonl": (CSV_HEADER + "\r\na.png,real,0.1,\r\n").encode(),  # ours, but not in the format its name says
    }
    monkeypatch.setattr(Detector, "from_pretrained", lambda *a, **k: pytest.fail("the model is not loaded for a refused --output"))
    for name, content in others.items():
        target = tmp_path / name
        target.write_bytes(content)
        code, _, err = run([image, "--model", tiny_model_dir, "-o", target], capsys)
        assert code == 2, name
        assert "not a `deepvrm detect` output" in err and "left as it is" in err, (name, err)
        assert target.read_bytes() == content, name
    assert "a name ending in .csv" in run([image, "--model", tiny_model_dir, "-o", tmp_path / "detect-csv.jsonl"], capsys)[2]
    monkeypatch.undo()
    # An empty file, a missing one and detect's own outputs are written to.
    (tmp_path / "empty.csv").write_bytes(b"")
    for name in ("empty.csv", "new.jsonl"):
        assert run([image, "--model", tiny_model_dir, "-o", tmp_path / name], capsys)[0] == 0
        assert run([image, "--model", tiny_model_dir, "-o", tmp_path / name], capsys)[2].count("Skipping 1 file") == 1


def test_control_characters_in_names_are_escaped_in_the_table(tmp_path, tiny_model_dir, capsys):
    names = ["new\nline.png", "\x1b[2J\x1b[31mred.png", "carriage\rreturn.png", "x\u202egnp.png"]
    for i, name in enumerate(names):
        noise(20, 20, seed=i).save(tmp_path / name, format="PNG")
    (tmp_path / "bad\x1b]0;title\x07.jpg").write_bytes(b"")
    code, stdout, _ = run([tmp_path, "--model", tiny_model_dir, "--no-progress"], capsys)
    assert code == 1
    lines = stdout.split("\n")[:-1]
    assert len(lines) == 1 + len(names) + 1  # the header and one line per file: no name split the table
    assert not any(c in stdout for c in "\x1b\r\x07\u202e")
    assert "new\\nline.png" in stdout and "\\x1b[2J\\x1b[31mred.png" in stdout and "x\\u202egnp.png" in stdout
    # -q: the failure goes to stderr, escaped too.
    _, _, err = run([tmp_path / "bad\x1b]0;title\x07.jpg", "--model", tiny_model_dir, "-q"], capsys)
    assert "\x1b" not in err and "bad\\x1b]0;title\\x07.jpg" in err


@pytest.mark.parametrize("flags, mode", [(["--compile"], "default"), (["--compile-mode", "max-autotune-no-cudagraphs"], "max-autotune-no-cudagraphs")])
def test_compile_flags_compile_the_model_and_keep_the_scores(tmp_path, tiny_model_dir, capsys, monkeypatch, flags, mode):
    """--compile / --compile-mode reach the Detector, which compiles the model (here with dynamo's
    graphs run as they are, so the test does not wait for inductor) and scores as without."""
    import deepvrm.inference.detector as detector_module

    compiled = []
    original = detector_module.compile_model

    def compile_cheaply(model, compile=True, **kwargs):
        compiled.append(compile)
        return original(model, compile, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(detector_module, "compile_model", compile_cheaply)
    for i in range(3):
        noise(40, 30, seed=i).save(tmp_path / f"{i}.png")
    plain, eager = tmp_path / "plain.jsonl", tmp_path / "compiled.jsonl"
    assert run([tmp_path, "--model", tiny_model_dir, "-o", plain], capsys)[0] == 0
    assert compiled == []
    assert run([tmp_path, "--model", tiny_model_dir, "-o", eager, *flags], capsys)[0] == 0
    assert compiled == [mode]
    scores = [{r["path"]: r["score"] for r in map(json.loads, f.read_text().splitlines())} for f in (plain, eager)]
    assert scores[0].keys() == scores[1].keys() and len(scores[0]) == 3
    for path, score in scores[0].items():
        assert scores[1][path] == pytest.approx(score, abs=1e-5)
