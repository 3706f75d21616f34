"""The standard detection benchmarks, read as they lie on disk, one group of samples per generator.

    read_benchmark(name, root, split=None, real=None) -> Benchmark
    mean_metrics(per_generator, benchmark, scores)    -> the "mean" row papers report

Layouts (`deepvrm evaluate --benchmark NAME ROOT [--split S] [--real DIR]`):

    genimage     ROOT/<Generator>/<subset>/{train,val}/{ai,nature}   (ROOT/<Generator>/{train,val}/... too)
                 each generator against its own `nature` images; split `val` by default
    cnnspot      ROOT/<gen>/{0_real,1_fake} or ROOT/<gen>/<category>/{0_real,1_fake}, categories
                 pooled per generator: ForenSynths/CNNSpot, UnivFD, AIGCDetectBenchmark, AIGIBench;
                 ROOT/{0_real,1_fake} is one generator (Chameleon). A folder with real images only
                 (UnivFD's `laion`, `imagenet`) is no generator; `--real DIR` gives reals to the
                 generators that have none (UnivFD's `guided/1_fake`, ...)
    synthbuster  ROOT/<gen>/* are fakes only; `--real DIR` (RAISE-1k) holds the reals, shared by
                 every generator
    drct2m       reals ROOT/MSCOCO/<split>, fakes ROOT/DRCT-2M/<gen>/<split>, split `val2017` by
                 default; the reals are shared by every generator (`--real DIR` replaces them)

Label folders are read by their names (`trainers.data.label_of_name`: `0_real`, `ai`, `nature`,
`REAL`, ...), never by their position. A folder a layout has no place for, a generator without
images or without the split asked for, stops the reading with a `ValueError` saying which. Images
are found by the one folder walker (`inference.files`): any extension case, OS junk skipped.

Shared reals are the same `Sample` objects in every generator's group: a scorer that takes each
image once (as `deepvrm evaluate` does) scores them once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from deepvrm.inference.files import image_files, is_skipped
from deepvrm.trainers.data import Sample, check_no_stray_folders, label_of_name, read_samples

BENCHMARKS = ("genimage", "cnnspot", "synthbuster", "drct2m")
DEFAULT_SPLITS = {"genimage": "val", "drct2m": "val2017"}  # the benchmarks that have splits
RATE_FIELDS = ("accuracy", "real_accuracy", "fake_accuracy", "average_precision", "roc_auc", "best_accuracy")
MEAN = "mean"


@dataclass
class Benchmark:
    name: str  # one of BENCHMARKS
    root: str
    generators: dict[str, list[Sample]]  # generator folder name -> its reals and fakes, in name order
    notes: list[str] = field(default_factory=list)  # what was read but is not a generator, said once

    def groups(self) -> dict[str, list[Sample]]:
        """`{"<benchmark>/<generator>": samples}`, the keys of the metrics rows."""
        return {f"{self.name}/{generator}": samples for generator, samples in self.generators.items()}


def read_benchmark(name: str, root: str | Path, split: str | None = None, real: str | Path | None = None) -> Benchmark:
    """The samples of benchmark `name` under `root`, per generator (see the module docstring)."""
    name = name.lower()
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}.")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder (the {name} root).")
    if split is not None and name not in DEFAULT_SPLITS:
        raise ValueError(f"--split applies to {' and '.join(DEFAULT_SPLITS)}; {name} has no splits (give ROOT as the folder to score).")
    if real is not None:
        if name == "genimage":
            raise ValueError("--real does not apply to genimage: each generator is scored against its own nature images.")
        if not Path(real).expanduser().is_dir():
            raise ValueError(f"{real}: no such folder (--real).")
    split = split or DEFAULT_SPLITS.get(name)
    reader = {"genimage": _genimage, "cnnspot": _cnnspot, "synthbuster": _synthbuster, "drct2m": _drct2m}[name]
    benchmark = Benchmark(name=name, root=str(root.resolve()), generators={})
    reader(benchmark, root.resolve(), split, None if real is None else Path(real).expanduser().resolve())
    if not benchmark.generators:
        raise ValueError(f"{root}: no generator folders found for {name} (layout: {_LAYOUTS[name]}).")
    return benchmark


_LAYOUTS = {
    "genimage": "ROOT/<Generator>/<subset>/{train,val}/{ai,nature}",
    "cnnspot": "ROOT/<gen>/{0_real,1_fake} or ROOT/<gen>/<category>/{0_real,1_fake}",
    "synthbuster": "ROOT/<gen>/* fakes, --real DIR reals",
    "drct2m": "ROOT/MSCOCO/<split> reals, ROOT/DRCT-2M/<gen>/<split> fakes",
}


def _folders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not is_skipped(p.name)), key=lambda p: p.name)


def _child(folder: Path, name: str) -> Path | None:
    """`folder/name`, its name matched in any case (MSCOCO, mscoco)."""
    exact = folder / name
    if exact.is_dir():
        return exact
    return next((p for p in _folders(folder) if p.name.lower() == name.lower()), None)


def _samples(paths, label: int, benchmark: Benchmark, generator: str | None) -> list[Sample]:
    return [Sample(image=str(Path(p).resolve()), label=label, dataset=benchmark.name, subset=generator) for p in paths]


def _shared_reals(benchmark: Benchmark, folder: Path, what: str) -> list[Sample]:
    reals = _samples(image_files(folder), 0, benchmark, None)
    if not reals:
        raise ValueError(f"{folder}: no images in it ({what}).")
    return reals


# ---------------------------------------------------------------------------------------- genimage
def _genimage(benchmark: Benchmark, root: Path, split: str, real: None) -> None:
    for generator in _folders(root):
        split_dirs = [generator / split] if (generator / split).is_dir() else [
            subset / split for subset in _folders(generator) if (subset / split).is_dir()
        ]  # fmt: skip
        if not split_dirs:
            raise ValueError(
                f"{generator}: no {split!r} folder (looked for {generator.name}/{split} and {generator.name}/*/{split}); "
                f"GenImage lies as {_LAYOUTS['genimage']} (--split chooses train or val)."
            )
        samples: list[Sample] = []
        for folder in split_dirs:
            labelled, others = [], []
            for sub in _folders(folder):
                label = label_of_name(sub.name)
                (labelled if label is not None else others).append((sub, label))
            check_no_stray_folders(folder, [p.name for p, _ in labelled], [p.name for p, _ in others])
            if {label for _, label in labelled} != {0, 1}:
                found = ", ".join(p.name for p, _ in labelled) or "none"
                raise ValueError(f"{folder}: expected its ai and nature folders, found label folders: {found}.")
            for sub, label in labelled:
                samples += _samples(image_files(sub), label, benchmark, generator.name)
        _add(benchmark, generator, samples)


# ---------------------------------------------------------------------------------------- cnnspot
def _cnnspot(benchmark: Benchmark, root: Path, split: None, real: Path | None) -> None:
    shared = None if real is None else _shared_reals(benchmark, real, "--real")
    has_labels = any(label_of_name(p.name) is not None and p.name not in ("0", "1") for p in _folders(root))
    generators = [root] if has_labels else _folders(root)  # ROOT/{0_real,1_fake}: one generator (Chameleon)
    for generator in generators:
        if real is not None and generator == real:
            continue
        samples = read_samples(generator)  # label folders at any depth below it: its categories, pooled
        if any(s.label is None for s in samples):
            raise ValueError(f"{generator}: no 0_real/1_fake folders in it (cnnspot lies as {_LAYOUTS['cnnspot']}).")
        for sample in samples:
            sample.dataset, sample.subset = benchmark.name, generator.name
        labels = {s.label for s in samples}
        if labels == {0}:
            benchmark.notes.append(
                f"{generator.name}: real images only, no generator (pass it as --real {generator} to score the "
                "generators that have no reals of their own against it)."
            )
            continue
        if 0 not in labels:
            if shared is None:
                benchmark.notes.append(f"{generator.name}: fake images only; its AP and ROC-AUC are undefined without --real DIR.")
            else:
                samples = shared + samples
        benchmark.generators[generator.name] = samples


# ---------------------------------------------------------------------------------------- synthbuster
def _synthbuster(benchmark: Benchmark, root: Path, split: None, real: Path | None) -> None:
    if real is None:
        raise ValueError("synthbuster holds fake images only: give the real images (RAISE-1k) with --real DIR.")
    shared = _shared_reals(benchmark, real, "--real")
    for generator in _folders(root):
        if generator == real:
            continue
        if label_of_name(generator.name) == 0:
            raise ValueError(f"{generator}: a folder of real images among synthbuster's generators; give it with --real instead.")
        fakes = _samples(image_files(generator), 1, benchmark, generator.name)
        _add(benchmark, generator, fakes, shared)


# ---------------------------------------------------------------------------------------- drct2m
def _drct2m(benchmark: Benchmark, root: Path, split: str, real: Path | None) -> None:
    if real is None:
        coco = _child(root, "MSCOCO")
        if coco is None or _child(coco, split) is None:
            raise ValueError(f"{root}: no MSCOCO/{split} folder of real images (DRCT-2M lies as {_LAYOUTS['drct2m']}; --real DIR gives the reals elsewhere).")
        real = _child(coco, split)
    shared = _shared_reals(benchmark, real, "the real images")
    fakes_root = _child(root, "DRCT-2M")
    if fakes_root is None:
        raise ValueError(f"{root}: no DRCT-2M folder of generated images (layout: {_LAYOUTS['drct2m']}).")
    for generator in _folders(fakes_root):
        folder = _child(generator, split)
        if folder is None:
            raise ValueError(f"{generator}: no {split!r} folder (--split chooses it; DRCT-2M has train2017 and val2017).")
        _add(benchmark, generator, _samples(image_files(folder), 1, benchmark, generator.name), shared)


def _add(benchmark: Benchmark, generator: Path, samples: list[Sample], shared: list[Sample] | None = None) -> None:
    if not samples:
        raise ValueError(f"{generator}: no images in it (every generator folder of {benchmark.name} holds some).")
    benchmark.generators[generator.name] = (shared or []) + samples


# ---------------------------------------------------------------------------------------- the mean row
def mean_metrics(per_generator: dict[str, dict], benchmark: Benchmark, scores: dict[str, float | None]) -> dict:
    """The row papers report under the generators: each rate (accuracy, real/fake accuracy, AP,
    ROC-AUC, best-threshold accuracy) averaged over the generators, unweighted (None when a
    generator does not define it; best_threshold None, each generator has its own);
    the counts are of distinct images (shared reals once), `n_failed` those without a score."""
    rows = [per_generator[key] for key in benchmark.groups()]
    result: dict = {}
    for name in RATE_FIELDS:
        values = [row.get(name) for row in rows]
        result[name] = None if not values or any(v is None for v in values) else sum(values) / len(values)
    result["best_threshold"] = None  # each generator's own; their mean is no threshold anyone used
    images: dict[str, Sample] = {}
    for samples in benchmark.generators.values():
        for sample in samples:
            images.setdefault(sample.image, sample)

    def scored(path: str) -> bool:
        value = scores.get(path)
        return value is not None and math.isfinite(value)

    result["n_real"] = sum(1 for path, s in images.items() if s.label == 0 and scored(path))
    result["n_fake"] = sum(1 for path, s in images.items() if s.label == 1 and scored(path))
    result["n_failed"] = sum(1 for path in images if not scored(path))
    return result


__all__ = ["BENCHMARKS", "DEFAULT_SPLITS", "MEAN", "Benchmark", "mean_metrics", "read_benchmark"]
