"""Data as the field ships it: the official training files' layout run from the repository root,
the standard benchmarks' folder layouts (one row per generator, then the mean), label conventions."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepvrm.cli.evaluate import main
from deepvrm.inference.detector import Detector, ScoreResult
from deepvrm.trainers.data import read_samples
from deepvrm.trainers.metrics import binary_metrics

RATES = ("accuracy", "real_accuracy", "fake_accuracy", "average_precision", "roc_auc", "best_accuracy")


def image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")
    return path


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def score_of(path: str) -> float:
    """A fixed P(fake) per file, from its path: the metrics can then be computed here independently."""
    return (zlib.crc32(os.path.realpath(path).encode()) % 1000) / 1000


def fake_scorer(monkeypatch):
    """The detector scores each file by `score_of`, fails on files named broken*; returns the paths it was given."""
    seen: list[str] = []

    def score_paths(detector, paths, transform=None):
        for path in paths:
            seen.append(path)
            if Path(path).name.startswith("broken"):
                yield ScoreResult(path, error="not an image")
            else:
                yield ScoreResult(path, score=score_of(path))

    monkeypatch.setattr(Detector, "score_paths", score_paths)
    return seen


def expected_row(reals: list[Path], fakes: list[Path], failed: int = 0) -> dict:
    labels = [0] * len(reals) + [1] * len(fakes)
    return {**binary_metrics(labels, [score_of(str(p)) for p in reals + fakes]), "n_failed": failed}


def expected_mean(rows: list[dict]) -> dict:
    return {**{name: sum(row[name] for row in rows) / len(rows) for name in RATES}, "best_threshold": None}


def assert_rows(result: dict, expected: dict) -> None:
    for key, row in expected.items():
        assert result[key].keys() == row.keys(), key
        for name, value in row.items():
            assert result[key][name] == pytest.approx(value), (key, name)


# ---------------------------------------------------------------------------------------- the official training files
# Synthetic records in the shapes of the official DATA/Train/Prompts files: every prompt phrasing
# they use, `images` as a string (GenImageTrain.jsonl, unrealistic.json) or a one-item list (dda_*),
# with a `channel` (real/fake, real_single/fake_single) or without one (dda_2.json).
IS_REAL = "Is this a real image? Answer only 'yes' or 'no'. <image>"
IS_AI = "Is this a AI-generated image? Answer only 'yes' or 'no'. <image>"
SIGNS = "After analyzing this image, are there clear signs of AI generation? Answer 'yes' or 'no'. <image>"
NATURAL_OR_AI = "Determine if this image is AI-generated. Your response must be either 'natural' or 'AI-generated'. <image>"
OPTIONS = "Please classify this image from the following options: 'natural image', 'ai-generated'. Your answer must be one of these options. <image>"
CHECK = "Please determine if the following image is real or fake. You can detailed check the image and find the evidence. Please just answer 'real' or 'fake'. <image>"
ONE_WORD = "Is this image real or fake? Please answer with only a single word: 'real' or 'fake'. <image>"
ANSWERS = {  # phrasing -> (answer for a real image, answer for a fake one)
    IS_REAL: ("yes", "no"), IS_AI: ("no", "yes"), SIGNS: ("no", "yes"), NATURAL_OR_AI: ("natural", "AI-generated"),
    OPTIONS: ("natural image", "ai-generated"), CHECK: ("real", "fake"), ONE_WORD: ("real", "fake"),
}  # fmt: skip


def record(path: str, label: int, prompt: str, images_as_list: bool, channel: str | None) -> dict:
    data = {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": ANSWERS[prompt][label]}],
            "images": [path] if images_as_list else path}  # fmt: skip
    if channel is not None:
        data["channel"] = channel.format(word=("real", "fake")[label])
    return data


def official_layout(root: Path) -> dict[str, int]:
    """The four prompt files under root/DATA/Train/Prompts, their images under root/DATA/Train/images
    (paths relative to root); returns {absolute image path: label}."""
    prompts = root / "DATA" / "Train" / "Prompts"
    prompts.mkdir(parents=True)
    truth: dict[str, int] = {}
    files = {
        # name: (folder of its images, phrasings, images as a list, channel)
        "GenImageTrain.jsonl": ("sd14", [CHECK], False, "{word}"),
        "unrealistic.json": ("ours", [CHECK], False, "{word}"),
        "dda_1.json": ("coco_vae", list(ANSWERS), True, "{word}_single"),
        "dda_2.json": ("chat", [CHECK], True, None),
    }
    seed = 0
    for name, (folder, phrasings, as_list, channel) in files.items():
        records = []
        for label in (0, 1):
            for i, prompt in enumerate(phrasings):
                relative = f"DATA/Train/images/{folder}/{('real', 'fake')[label]}/{i:03d}.{'JPEG' if label == 0 else 'png'}"
                truth[str(image(root / relative, seed).resolve())] = label
                seed += 1
                records.append(record(relative, label, prompt, as_list, channel))
        # The official .jsonl file holds one JSON array, as the .json files do.
        (prompts / name).write_text(json.dumps(records, indent=2))
    return truth


def test_official_training_files_score_every_image_with_its_records_label(tmp_path, tiny_model_dir, capsys, monkeypatch):
    root = tmp_path / "Deep-VRM"
    truth = official_layout(root)
    fake_scorer(monkeypatch)
    monkeypatch.chdir(root)  # where the official scripts run
    files = sorted(str(p.relative_to(root)) for p in (root / "DATA" / "Train" / "Prompts").iterdir())
    out, per_image = tmp_path / "m.json", tmp_path / "scores.jsonl"
    code, _, err = run([*files, "--model", tiny_model_dir, "-o", out, "--scores", per_image], capsys)
    assert code == 0, err
    assert "without a label" not in err
    rows = [json.loads(line) for line in per_image.read_text().splitlines()]
    assert {row["path"]: row["label"] for row in rows} == truth  # every image, with its record's label
    result = json.loads(out.read_text())
    assert {name: (m["n_real"], m["n_fake"]) for name, m in result.items()} == {
        "GenImageTrain": (1, 1), "dda_1": (7, 7), "dda_2": (1, 1), "unrealistic": (1, 1),
    }  # fmt: skip


def test_official_training_files_load_for_training(tmp_path, monkeypatch):
    from deepvrm.trainers.cli import parse_args
    from deepvrm.trainers.train import DataArguments, build_datasets

    root = tmp_path / "Deep-VRM"
    truth = official_layout(root)
    monkeypatch.chdir(root)
    files = [f"DATA/Train/Prompts/{name}" for name in ("GenImageTrain.jsonl", "dda_1.json", "dda_2.json", "unrealistic.json")]
    train, _ = build_datasets(DataArguments(train_data=files), "lm")
    assert {row["image"]["path"]: row["label"] for row in train} == truth
    # From elsewhere, --image-root DIR says where the relative paths start.
    monkeypatch.chdir(tmp_path)
    argv = ["--stage", "2", "--model", "tiny", "--train-data", *(str(root / f) for f in files), "--image-root", str(root),
            "--output-dir", str(tmp_path / "out")]  # fmt: skip
    _, data_args, _, _ = parse_args(argv)
    assert data_args.image_root == str(root)
    train, _ = build_datasets(data_args, "classification")
    assert {row["image"]["path"]: row["label"] for row in train} == truth


def test_missing_images_are_named_with_the_places_tried(tmp_path, monkeypatch):
    root = tmp_path / "Deep-VRM"
    official_layout(root)
    data = root / "DATA" / "Train" / "Prompts" / "dda_2.json"
    monkeypatch.chdir(tmp_path)  # not the repository root
    with pytest.raises(ValueError) as error:
        read_samples(data)
    message = str(error.value)
    assert "2 of 2 records" in message and "record 0: DATA/Train/images/chat/real/000.JPEG" in message
    assert f"{data.parent} (the file's folder)" in message and f"{tmp_path} (the working directory)" in message
    assert "--image-root" in message
    with pytest.raises(ValueError, match=r"the image root"):
        read_samples(data, image_root=root / "DATA")
    assert [s.label for s in read_samples(data, image_root=root)] == [0, 1]


def test_channel_contradicting_the_answer_is_an_error(tmp_path):
    image(tmp_path / "a.png")
    data = tmp_path / "d.json"
    data.write_text(json.dumps([record("a.png", 0, IS_REAL, True, "fake_single")]))
    with pytest.raises(ValueError, match=r"record 0: its channel 'fake_single' says fake, its answer 'yes' says real"):
        read_samples(data)
    # A channel that names no class (ms-swift's loss channels) is no label: the answer is.
    data.write_text(json.dumps([record("a.png", 1, OPTIONS, True, "caption")]))
    assert read_samples(data)[0].label == 1


# ---------------------------------------------------------------------------------------- label conventions
@pytest.mark.parametrize("real, fake", [("human", "artificial"), ("REAL", "FAKE"), ("Nature", "AI")])
def test_label_folder_conventions(tmp_path, real, fake):
    image(tmp_path / "set" / real / "r.png")
    image(tmp_path / "set" / fake / "f.PNG")
    assert sorted((s.label, Path(s.image).name) for s in read_samples(tmp_path / "set")) == [(0, "r.png"), (1, "f.PNG")]


def test_unknown_folder_beside_label_folders_stops_and_names_it(tmp_path, tiny_model_dir, capsys, monkeypatch):
    image(tmp_path / "set" / "0_real" / "r.png")
    image(tmp_path / "set" / "1_fake" / "f.png")
    image(tmp_path / "set" / "2_maybe" / "m.png")
    seen = fake_scorer(monkeypatch)
    code, _, err = run([tmp_path / "set", "--model", tiny_model_dir], capsys)
    assert code == 2 and "'2_maybe'" in err and "no label" in err
    assert seen == []  # stopped before scoring


def test_csv_lists(tmp_path, tiny_model_dir, capsys, monkeypatch):
    for name in ("a.png", "b.png", "c.png"):
        image(tmp_path / "imgs" / name)
    (tmp_path / "labels.csv").write_text("filename,label\nimgs/a.png,human\nimgs/b.png,artificial\nimgs/c.png,1\n")
    assert [s.label for s in read_samples(tmp_path / "labels.csv")] == [0, 1, 1]
    (tmp_path / "bare.csv").write_text("a.png,REAL\nb.png,FAKE\n")  # no header; names relative to --image-root
    assert [s.label for s in read_samples(tmp_path / "bare.csv", image_root=tmp_path / "imgs")] == [0, 1]
    (tmp_path / "odd.csv").write_text("filename,label\nimgs/a.png,real\nimgs/b.png,probably\n")
    seen = fake_scorer(monkeypatch)
    code, _, err = run([tmp_path / "odd.csv", "--model", tiny_model_dir], capsys)
    assert code == 2 and "line 3: unknown label 'probably'" in err and seen == []
    fake_scorer(monkeypatch)
    code, _, _ = run([tmp_path / "bare.csv", "--image-root", tmp_path / "imgs", "--model", tiny_model_dir], capsys)
    assert code == 0


# ---------------------------------------------------------------------------------------- benchmarks
def evaluate_benchmark(argv, tmp_path, tiny_model_dir, capsys, monkeypatch):
    seen = fake_scorer(monkeypatch)
    out = tmp_path / "metrics.json"
    code, stdout, err = run(["--benchmark", *argv, "--model", tiny_model_dir, "-o", out], capsys)
    return code, (json.loads(out.read_text()) if out.exists() else None), stdout, err, seen


def test_genimage(tmp_path, tiny_model_dir, capsys, monkeypatch):
    root = tmp_path / "GenImage"
    layout = {"ADM": ("imagenet_ai_0508_adm", 2, 3), "Midjourney": ("imagenet_midjourney", 3, 1), "wukong": (None, 1, 2)}
    expected, seed = {}, 0
    for generator, (subset, n_real, n_fake) in layout.items():
        base = root / generator / subset if subset else root / generator  # with and without the subset level
        reals = [image(base / "val" / "nature" / f"n{i}.JPEG", seed := seed + 1) for i in range(n_real)]
        fakes = [image(base / "val" / "ai" / f"{i}_{generator}.png", seed := seed + 1) for i in range(n_fake)]
        image(base / "train" / "ai" / "train_only.png")  # another split: not scored
        (base / "val" / "ai" / "Thumbs.db").write_bytes(b"junk")  # OS junk: not an image
        (base / "val" / "nature" / f"._n0.JPEG").write_bytes(b"junk")
        expected[f"genimage/{generator}"] = expected_row(reals, fakes)
    broken = root / "ADM" / "imagenet_ai_0508_adm" / "val" / "ai" / "broken.png"
    broken.write_bytes(b"\x89PNG garbage")
    expected["genimage/ADM"]["n_failed"] = 1

    code, result, stdout, _, seen = evaluate_benchmark(["genimage", root], tmp_path, tiny_model_dir, capsys, monkeypatch)
    assert code == 1  # one image failed; it is counted, the run went on
    assert list(result) == ["genimage/ADM", "genimage/Midjourney", "genimage/wukong", "genimage/mean"]
    assert_rows(result, expected)
    rows = [expected[f"genimage/{g}"] for g in layout]
    assert_rows(result, {"genimage/mean": {**expected_mean(rows), "n_real": 6, "n_fake": 6, "n_failed": 1}})
    assert not any("train" in Path(p).parts for p in seen) and len(seen) == len(set(seen)) == 13
    # The papers' layout: the benchmark over its generators, then the mean.
    lines = stdout.splitlines()
    assert lines[0].split()[0] == "genimage"
    assert [line.split()[0] for line in lines[2:]] == ["ADM", "Midjourney", "wukong", "mean"]
    # --split train reads the other split: here it has no nature folders, and says so before scoring.
    code, _, _, err, seen = evaluate_benchmark(["genimage", root, "--split", "train"], tmp_path, tiny_model_dir, capsys, monkeypatch)
    assert code == 2 and "expected its ai and nature folders" in err and seen == []


def test_genimage_errors_name_the_folder(tmp_path, tiny_model_dir, capsys, monkeypatch):
    root = tmp_path / "GenImage"
    image(root / "ADM" / "sub" / "val" / "ai" / "a.png")
    image(root / "ADM" / "sub" / "val" / "nature" / "n.png")
    image(root / "notes" / "x.png")
    code, _, _, err, seen = evaluate_benchmark(["genimage", root], tmp_path, tiny_model_dir, capsys, monkeypatch)
    assert code == 2 and "notes: no 'val' folder" in err and seen == []
    (root / "notes" / "x.png").unlink()
    (root / "notes").rmdir()
    image(root / "ADM" / "sub" / "val" / "masks" / "m.png")
    code, _, _, err, seen = evaluate_benchmark(["genimage", root], tmp_path, tiny_model_dir, capsys, monkeypatch)
    assert code == 2 and "'masks'" in err and seen == []


def test_cnnspot(tmp_path, tiny_model_dir, capsys, monkeypatch):
    root = tmp_path / "CNN_synth_testset"
    expected, seed = {}, 100
    reals, fakes = {}, {}
    # gaugan: flat; progan: categories, pooled; a third with upper-case extensions.
    for generator, categories in (("gaugan", [None]), ("progan", ["airplane", "cat"]), ("stylegan", ["car"])):
        reals[generator], fakes[generator] = [], []
        for category in categories:
            base = root / generator / category if category else root / generator
            ext = ".PNG" if generator == "stylegan" else ".png"
            reals[generator] += [image(base / "0_real" / f"r{i}{ext}", seed := seed + 1) for i in range(2)]
            fakes[generator] += [image(base / "1_fake" / f"f{i}{ext}", seed := seed + 1) for i in range(1 + (category == "cat"))]
        expected[f"cnnspot/{generator}"] = expected_row(reals[generator], fakes[generator])
    code, result, stdout, _, seen = evaluate_benchmark(["cnnspot", root], tmp_path, tiny_model_dir, capsys, monkeypatch)
    assert code == 0
    assert list(result) == ["cnnspot/gaugan", "cnnspot/progan", "cnnspot/stylegan", "cnnspot/mean"]
    assert_rows(result, expected)
    assert (result["cnnspot/progan"]["n_real"], result["cnnspot/progan"]["n_fake"]) == (4, 3)
    mean = expected_mean(list(expected.values()))
    assert_rows(result, {"cnnspot/mean": {**mean, "n_real": 8, "n_fake": 5, "n_failed": 0}})

    # UnivFD's own layout: real-only folders are no generators; --real gives the fake-only ones reals.
    univfd = tmp_path / "diffusion_datasets"
    laion = [image(univfd / "laion" / "0_real" / f"l{i}.png", 200 + i) for i in range(3)]
    guided = [image(univfd / "guided" / "1_fake" / f"g{i}.png", 210 + i) for i in range(2)]
    ldm = [image(univfd / "ldm_200" / "1_fake" / f"d{i}.png", 220 + i) for i in range(2)]
    argv = ["cnnspot", univfd, "--real", univfd / "laion" / "0_real"]
    code, result, _, err, seen = evaluate_benchmark(argv, tmp_path, tiny_model_dir, capsys, monkeypatch)
    assert code == 0 and "laion: real images only" in err
    assert list(result) == ["cnnspot/guided", "cnnspot/ldm_200", "cnnspot/mean"]
    assert_rows(result, {"cnnspot/guided": expected_row(laion, guided), "cnnspot/ldm_200": expected_row(laion, ldm)})
    assert len(seen) == len(set(seen)) == 7  # the shared reals once

    # Chameleon: ROOT/{0_real,1_fake} is one generator.
    chameleon = tmp_path / "Chameleon" / "test"
    r = [image(chameleon / "0_real" / "r.jpg", 300)]
    f = [image(chameleon / "1_fake" / "f.jpg", 301)]
    code, result, *_ = evaluate_benchmark(["cnnspot", chameleon], tmp_path, tiny_model_dir, capsys, monkeypatch)
    assert code == 0 and list(result) == ["cnnspot/test", "cnnspot/mean"]
    assert_rows(result, {"cnnspot/test": expected_row(r, f)})


def test_synthbuster_shares_raise_reals(tmp_path, tiny_model_dir, capsys, monkeypatch):
    root, raise_dir = tmp_path / "synthbuster", tmp_path / "RAISE"
    reals = [image(raise_dir / f"r{i:04d}.png", 400 + i) for i in range(3)]
    expected = {}
    for n, generator in enumerate(("dalle3", "midjourney-v5", "stable-diffusion-xl")):
        fakes = [image(root / generator / f"{i}.png", 410 + 10 * n + i) for i in range(n + 1)]
        expected[f"synthbuster/{generator}"] = expected_row(reals, fakes)
    (root / "prompts.csv").write_text("image,prompt\n")  # beside the generators: not an image
    code, _, _, err, _ = evaluate_benchmark(["synthbuster", root], tmp_path, tiny_model_dir, capsys, monkeypatch)
    assert code == 2 and "--real DIR" in err
    argv = ["synthbuster", root, "--real", raise_dir, "--perturb", "jpeg:75"]
    code, result, stdout, _, seen = evaluate_benchmark(argv, tmp_path, tiny_model_dir, capsys, monkeypatch)
    assert code == 0
    assert_rows(result, expected)
    mean = expected_mean(list(expected.values()))
    assert_rows(result, {"synthbuster/mean": {**mean, "n_real": 3, "n_fake": 6, "n_failed": 0}})
    assert len(seen) == 2 * 9 and len(set(seen)) == 9  # every image once per condition, shared reals too
    assert list(result["perturbations"]["jpeg:75"]) == [*expected, "synthbuster/mean"]
    assert "synthbuster [jpeg:75]" in stdout


def test_drct2m(tmp_path, tiny_model_dir, capsys, monkeypatch):
    root = tmp_path / "DRCT"
    reals = [image(root / "MSCOCO" / "val2017" / f"{i:012d}.jpg", 500 + i) for i in range(3)]
    image(root / "MSCOCO" / "train2017" / "t.jpg")
    expected = {}
    for n, generator in enumerate(("ldm-text2im-large-256", "sd-turbo")):
        fakes = [image(root / "DRCT-2M" / generator / "val2017" / f"{i:012d}.png", 510 + 10 * n + i) for i in range(2 + n)]
        image(root / "DRCT-2M" / generator / "train2017" / "t.png")
        expected[f"drct2m/{generator}"] = expected_row(reals, fakes)
    code, result, stdout, _, seen = evaluate_benchmark(["drct2m", root], tmp_path, tiny_model_dir, capsys, monkeypatch)
    assert code == 0
    assert list(result) == [*expected, "drct2m/mean"]
    assert_rows(result, expected)
    mean = expected_mean(list(expected.values()))
    assert_rows(result, {"drct2m/mean": {**mean, "n_real": 3, "n_fake": 5, "n_failed": 0}})
    assert len(seen) == len(set(seen)) == 8
    # A generator without the split asked for is named.
    (root / "DRCT-2M" / "sd-turbo" / "val2017").rename(root / "DRCT-2M" / "sd-turbo" / "val")
    code, _, _, err, _ = evaluate_benchmark(["drct2m", root], tmp_path, tiny_model_dir, capsys, monkeypatch)
    assert code == 2 and "sd-turbo: no 'val2017' folder" in err


def test_benchmark_usage_errors(tmp_path, tiny_model_dir, capsys, monkeypatch):
    image(tmp_path / "b" / "g" / "0_real" / "r.png")
    for argv, message in [
        (["imagenet", tmp_path / "b"], "unknown benchmark"),
        (["cnnspot", tmp_path / "b", "--split", "val"], "--split applies to"),
        (["genimage", tmp_path / "b", "--real", tmp_path / "b"], "--real does not apply"),
        (["cnnspot", tmp_path / "missing"], "no such folder"),
    ]:
        code, _, _, err, seen = evaluate_benchmark(argv, tmp_path, tiny_model_dir, capsys, monkeypatch)
        assert code == 2 and message in err, (argv, err)
        assert seen == []
