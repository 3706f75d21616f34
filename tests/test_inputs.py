"""Every command takes the same image files from the same folder (one walker: deepvrm.inference.files).

The folder mixes what a user's picture folders hold besides pictures: macOS resource forks
(`._x.png`), `.DS_Store`, `Thumbs.db`, `desktop.ini`, hidden folders with images in them, and
upper-case extensions. The expected set is written out by hand below, not computed by the walker.
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from deepvrm.analysis._common import read_datasets as analysis_datasets
from deepvrm.cli.detect import collect_inputs
from deepvrm.cli.detect import main as detect_main
from deepvrm.cli.evaluate import main as evaluate_main
from deepvrm.trainers.data import load_dataset_source

# Relative path -> what it is. True: an image every command must take; False: never taken.
LAYOUT = {
    "real/a.JPEG": True,
    "real/b.png": True,
    "real/sub/c.PNG": True,
    "real/._b.png": False,  # AppleDouble resource fork of b.png (not a picture)
    "real/.DS_Store": False,
    "real/Thumbs.db": False,
    "real/desktop.ini": False,
    "real/.hidden/d.png": False,  # a hidden folder's images are not the user's set
    "real/notes.txt": False,
    "fake/e.jpeg": True,
    "fake/f.Tif": True,
    "fake/._e.jpeg": False,
    "fake/.thumbnails/g.png": False,
    "fake/THUMBS.DB": False,
}
EXPECTED = sorted(path for path, taken in LAYOUT.items() if taken)


def _build(root):
    rng = np.random.default_rng(0)
    for relative, is_image in LAYOUT.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = {".jpeg": "JPEG", ".jpg": "JPEG", ".png": "PNG", ".tif": "TIFF"}.get(path.suffix.lower())
        if fmt and not path.name.startswith("._"):
            # Hidden-folder images are real pictures too: only the walk's rules keep them out.
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(path, format=fmt)
        else:
            path.write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")  # not an image, whatever its name
    return root


def _relative(root, paths) -> list[str]:
    return sorted(os.path.relpath(os.path.realpath(p), os.path.realpath(root)).replace(os.sep, "/") for p in paths)


def test_detect_evaluate_train_and_the_analyses_take_the_same_files(tmp_path, tiny_model_dir, capsys):
    root = _build(tmp_path / "data")

    # deepvrm detect: what it collects, and what it writes after scoring.
    assert _relative(root, collect_inputs([str(root)])[0]) == EXPECTED
    out = tmp_path / "detect.jsonl"
    assert detect_main([str(root), "--model", str(tiny_model_dir), "-o", str(out), "-q", "--no-progress"]) == 0
    detected = [json.loads(line) for line in out.read_text().splitlines()]
    assert _relative(root, [row["path"] for row in detected]) == EXPECTED and all("score" in row for row in detected)

    # deepvrm evaluate: every image it scored (exit 0: none of the junk files was tried and failed).
    scores = tmp_path / "scores.jsonl"
    assert evaluate_main([str(root), "--model", str(tiny_model_dir), "--scores", str(scores), "-q", "--no-progress"]) == 0
    evaluated = [json.loads(line) for line in scores.read_text().splitlines()]
    assert _relative(root, [row["path"] for row in evaluated]) == EXPECTED
    assert {row["path"].rsplit("/", 1)[-1]: row["label"] for row in evaluated} == {
        "a.JPEG": 0, "b.png": 0, "c.PNG": 0, "e.jpeg": 1, "f.Tif": 1,
    }  # fmt: skip

    # deepvrm train: the dataset it trains on.
    dataset = load_dataset_source(str(root))
    assert _relative(root, [entry["path"] for entry in dataset["image"]]) == EXPECTED

    # deepvrm probe / attribute.
    (analysed,) = analysis_datasets([str(root)])
    assert _relative(root, [sample.image for sample in analysed.samples]) == EXPECTED
    capsys.readouterr()


def test_a_glob_skips_os_junk_but_a_file_named_explicitly_is_taken(tmp_path):
    root = _build(tmp_path / "data")
    paths, _ = collect_inputs([str(root / "real" / "*")])
    # The glob matches the sub-folder too (searched), but neither Thumbs.db nor desktop.ini.
    assert _relative(root, paths) == ["real/a.JPEG", "real/b.png", "real/notes.txt", "real/sub/c.PNG"]
    named = root / "real" / "._b.png"
    assert collect_inputs([str(named)])[0] == [str(named)]  # asked for by name: scored (and reported)
