"""Checking the data before the model loads: every problem is found, named and counted once, in
seconds, instead of at collate time (once per epoch) or after the model has loaded.

    checked = check_source(source, dataset, objective="lm", role="training")

- every image's header is opened (Pillow reads the header only; no pixel is decoded), so missing,
  empty, non-image and header-corrupt files are found up front; they are counted and named once,
  and left out of the returned dataset (a run then never meets a batch whose images all fail);
- labels: with the classification objective a sample without a label is an error naming it; with
  the LM objective the samples whose answer carries no verdict (neither real nor fake) are counted;
- image folders: which label folders were used, and which images were ignored (in folders whose
  names are no label, e.g. `DIR/banana/`), are said.

`check_classes` then refuses (classification) or warns about (LM) data of one class only.
"""

from __future__ import annotations

import io
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

logger = logging.getLogger(__name__)

SHOWN = 5  # names quoted in a message; the rest are counted


def image_problem(entry) -> str | None:
    """None when the image's header reads, else "<file>: <reason>" (cheap: no pixel is decoded)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    from deepvrm.inference.images import ImageError, _check_file

    if isinstance(entry, Image.Image) or entry is None:
        return None if entry is not None else "a sample: no image"
    if isinstance(entry, (str, os.PathLike)):
        entry = {"path": os.fspath(entry), "bytes": None}
    path = entry.get("path") or "image bytes"
    try:
        if entry.get("bytes"):
            source = io.BytesIO(entry["bytes"])
        else:
            if not entry.get("path"):
                return "a sample: no image path nor bytes"
            _check_file(entry["path"])
            source = entry["path"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                width, height = image.size
        if width < 1 or height < 1:
            return f"{path}: invalid image size {width}x{height}"
    except ImageError as error:
        return str(error)
    except UnidentifiedImageError:
        return f"{path}: not an image (or a format Pillow cannot read)"
    except Exception as error:  # noqa: BLE001 - OSError, plugins' SyntaxError/ValueError on bad headers
        return f"{path}: cannot read its header ({type(error).__name__}: {error})"
    return None


def unreadable_images(dataset, workers: int | None = None) -> list[tuple[int, str]]:
    """(index, "<file>: <reason>") of each sample of `dataset` (our schema) whose image does not open."""
    workers = workers or min(16, 4 * (os.cpu_count() or 1))  # opening files waits on the disk, not the CPU
    problems: list[tuple[int, str]] = []
    start = 0
    images = dataset.select_columns(["image"])
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for batch in images.iter(batch_size=1024):
            entries = batch["image"]
            for offset, problem in enumerate(pool.map(image_problem, entries)):
                if problem is not None:
                    problems.append((start + offset, problem))
            start += len(entries)
    return problems


def _some(items: list[str], total: int | None = None) -> str:
    """The first few of `items`, and how many more there are (of `total`, default all of them)."""
    total = len(items) if total is None else total
    shown = "; ".join(items[:SHOWN])
    return shown + (f"; and {total - min(SHOWN, len(items))} more" if total > SHOWN else "")


def _where(row: dict, index: int) -> str:
    image = row.get("image") or {}
    path = image.get("path") if isinstance(image, dict) else None
    return path or f"sample {index}"


def check_source(source, dataset, objective: str = "lm", role: str = "training"):
    """`dataset` without its unreadable samples, after saying what it holds (see the module
    docstring). Raises `ValueError` naming the samples for data that cannot train (or evaluate)."""
    name = str(source)
    n = len(dataset)
    if n == 0:
        raise ValueError(f"{name}: no {role} samples in it.")
    problems = unreadable_images(dataset)
    if problems:
        if len(problems) == n:
            raise ValueError(f"{name}: none of its {n} images can be read: {_some([p for _, p in problems])}")
        logger.warning(
            "%s: %d of %d images cannot be read and are left out of %s: %s",
            name, len(problems), n, role, _some([p for _, p in problems]),
        )
        bad = {i for i, _ in problems}
        dataset = dataset.select([i for i in range(n) if i not in bad])
    labels = dataset["label"]
    counts = Counter(labels)
    no_label = [i for i, label in enumerate(labels) if label is None]
    if no_label and role == "training":
        if objective == "classification":
            rows = [dataset[i] for i in no_label[:SHOWN]]
            named = [f"{_where(r, i)}" + (f" (answer {r['answer']!r})" if r.get("answer") else "") for r, i in zip(rows, no_label)]
            raise ValueError(
                f"{name}: {len(no_label)} of {len(dataset)} training samples have no label (real or fake), which the "
                f"classification objective needs: {_some(named, len(no_label))}"
            )
        answered = [i for i in no_label if dataset[i]["answer"]]
        if answered:
            examples = [f"{_where(dataset[i], i)}: {dataset[i]['answer'][:60]!r}" for i in answered[:SHOWN]]
            every = " (none of them does: is this detection data?)" if len(answered) == len(dataset) else ""
            logger.warning(
                "%s: %d of %d training samples carry no verdict%s: their answer names neither real nor fake, "
                "so they train on their text but no metric counts them. E.g. %s",
                name, len(answered), len(dataset), every, "; ".join(examples),
            )
    _describe(name, dataset, counts, role)
    return dataset


def _describe(name: str, dataset, counts: Counter, role: str) -> None:
    parts = [f"{counts.get(0, 0)} real", f"{counts.get(1, 0)} fake"]
    if counts.get(None):
        parts.append(f"{counts[None]} without a label")
    folders = _folders_used(name, dataset)
    logger.info("%s data %s: %d samples (%s)%s", role.capitalize(), name, len(dataset), ", ".join(parts),
                f", from {folders}" if folders else "")


def _folders_used(source: str, dataset) -> str | None:
    """For an image folder: its label folders and their image counts (e.g. "real/ 8, fake/ 8"),
    and a warning for the images it holds outside them."""
    from deepvrm.inference.files import image_files

    root = Path(source).expanduser()
    if not root.is_dir() or (root / "dataset_info.json").exists() or (root / "state.json").exists() or (root / "dataset_dict.json").exists():
        return None
    root = root.resolve()
    used: Counter = Counter()
    taken = set()
    labels = {}
    for image, label, subset in zip(dataset["image"], dataset["label"], dataset["subset"]):
        path = (image or {}).get("path")
        if not path:
            continue
        taken.add(path)
        try:
            rel = Path(path).relative_to(root)
        except ValueError:
            continue
        skip = len(Path(subset).parts) if subset else 0
        folder = "/".join(rel.parts[: skip + 1]) + "/" if len(rel.parts) > skip + 1 else "./"
        used[folder] += 1
        labels[folder] = label
    if labels and all(label is not None for label in labels.values()):
        ignored: Counter = Counter()
        for path in image_files(root):
            if path not in taken:
                rel = Path(path).relative_to(root)
                ignored[rel.parts[0] + "/" if len(rel.parts) > 1 else "./"] += 1
        if ignored:
            from .data import FAKE_FOLDERS, REAL_FOLDERS

            logger.warning(
                "%s: %d images outside its real/fake folders are ignored (%s); label folders are named %s (real) "
                "or %s (fake).",
                source, sum(ignored.values()), ", ".join(f"{k} {v}" for k, v in sorted(ignored.items())),
                "/".join(sorted(REAL_FOLDERS - {"0"})), "/".join(sorted(FAKE_FOLDERS - {"1"})),
            )
    word = {0: "real", 1: "fake", None: "unlabelled"}
    return ", ".join(f"{folder} {count} ({word[labels[folder]]})" for folder, count in used.items()) or None


def check_classes(counts: Counter, objective: str, stage: int | None) -> None:
    """Refuse a classification run on one class; warn about LM training data of one class."""
    present = [label for label in (0, 1) if counts.get(label)]
    if len(present) == 2 or not present:
        return
    word = "real" if present == [0] else "fake"
    missing = "fake" if word == "real" else "real"
    message = (f"the training data holds {word} samples only ({counts[present[0]]}) and no {missing} one")
    if objective == "classification":
        raise ValueError(f"{message}: a stage-{stage or 2} classifier needs both classes.")
    logger.warning("%s: the model can only learn to answer %r.", message[0].upper() + message[1:], word)


__all__ = ["check_source", "check_classes", "image_problem", "unreadable_images"]
