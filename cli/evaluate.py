"""`deepvrm evaluate`: accuracy, AP and ROC-AUC of a model on labelled data.

    deepvrm evaluate DATA... [--model ID_OR_DIR] [--output metrics.json] [--report DIR]
                     [--perturb jpeg:95,75,50 resize:0.5 blur:1.0] [--scores FILE.jsonl] [--image-root DIR]
    deepvrm evaluate --benchmark {genimage,cnnspot,synthbuster,drct2m} ROOT [--split S] [--real DIR] ...

DATA: the official JSON/JSONL format (labels from a `label` or `channel` field or the assistant
turn; relative image paths found in the file's folder, the working directory or --image-root),
`filename,label` CSV lists or image folders (`DIR/real`, `DIR/fake`, `0_real`/`1_fake`,
`nature`/`ai`, nested `DIR/<generator>/{real,fake}`), read by `deepvrm.trainers.data.read_samples`.
`--benchmark NAME ROOT`: a standard benchmark as it lies on disk (`deepvrm.trainers.benchmarks`),
one row per generator, `"<benchmark>/<generator>"`, and `"<benchmark>/mean"`, the mean over the
generators that papers report; reals shared by generators are scored once.

`--output` writes `{"<dataset>": {accuracy, real_accuracy, fake_accuracy, average_precision,
roc_auc, best_accuracy, best_threshold, n_real, n_fake, n_failed}, "<dataset>/<generator>": {...},
...}` (the numbers of the `evaluate` metric module `deepvrm.trainers.metrics.METRIC_PATH`; best_*:
the accuracy at the threshold best for that data, and that threshold); with `--perturb` the
same for each perturbed copy under `"perturbations": {"jpeg:95": {...}, ...}`. Values that a
dataset cannot define (ROC-AUC of a fake-only set) are null and print as "n/a".

Several processes and GPUs: `accelerate launch --num_processes N -m deepvrm.cli evaluate ...` (or
torchrun): the main process reads the data, each process scores every N-th image on its own device,
the main process merges the scores and prints and writes everything, the same as one process would
(`deepvrm.inference.processes`).

Exit status: 0 every image scored, 1 some images could not be scored (left out of the metrics,
counted in n_failed), 2 usage error (no model, unreadable data, bad --perturb).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deepvrm.cli.detect import _display, progress_bar
from deepvrm.cli.options import UsageError, add_model_arguments, add_scoring_arguments, check_model_arguments, load_detector
from deepvrm.cli.tables import markdown_table, text_table
from deepvrm.inference.processes import Processes, unshare
from deepvrm.trainers.benchmarks import BENCHMARKS, MEAN

TABLE_COLUMNS = (
    ("n_real", "real"), ("n_fake", "fake"), ("accuracy", "acc"), ("real_accuracy", "real_acc"),
    ("fake_accuracy", "fake_acc"), ("average_precision", "AP"), ("roc_auc", "ROC-AUC"), ("best_accuracy", "best_acc"),
    ("n_failed", "failed"),
)  # fmt: skip
PERTURBATIONS_KEY = "perturbations"


# ---------------------------------------------------------------------------------------- perturbations
@dataclass(frozen=True)
class Perturbation:
    """A degradation applied to each opened RGB image before scoring (robustness sweeps)."""

    kind: str
    value: float

    @property
    def name(self) -> str:
        value = int(self.value) if self.kind == "jpeg" else self.value
        return f"{self.kind}:{value}"

    def __call__(self, image):
        from PIL import Image, ImageFilter

        if self.kind == "jpeg":
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=int(self.value))
            buffer.seek(0)
            with Image.open(buffer) as decoded:
                return decoded.convert("RGB")
        if self.kind == "resize":
            width, height = image.size
            size = (max(1, round(width * self.value)), max(1, round(height * self.value)))
            return image.resize(size, Image.Resampling.BILINEAR)
        if self.kind == "blur":
            return image.filter(ImageFilter.GaussianBlur(radius=self.value))  # radius = sigma in pixels
        raise ValueError(self.kind)


_PERTURB_HELP = "jpeg:Q[,Q...] (quality 1-100), resize:S[,S...] (scale > 0), blur:SIGMA[,SIGMA...] (Gaussian, pixels)"


def parse_perturbations(specs: list[str]) -> list[Perturbation]:
    """`["jpeg:95,75", "blur:1.0"]` -> jpeg 95, jpeg 75, blur 1.0. Raises ValueError on a bad spec."""
    result: list[Perturbation] = []
    for spec in specs:
        kind, sep, values = spec.partition(":")
        kind = kind.strip().lower()
        if not sep or not values.strip() or kind not in ("jpeg", "resize", "blur"):
            raise ValueError(f"bad --perturb spec {spec!r}; expected {_PERTURB_HELP}")
        for text in values.split(","):
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"bad value {text!r} in --perturb {spec!r}; expected {_PERTURB_HELP}") from None
            if kind == "jpeg" and not (value == int(value) and 1 <= value <= 100):
                raise ValueError(f"JPEG quality must be an integer in 1..100, got {text!r} in {spec!r}")
            if kind == "resize" and not 0 < value <= 8:
                raise ValueError(f"resize scale must lie in (0, 8], got {text!r} in {spec!r}")
            if kind == "blur" and not 0 <= value <= 50:
                raise ValueError(f"blur sigma must lie in [0, 50], got {text!r} in {spec!r}")
            perturbation = Perturbation(kind, value)
            if perturbation not in result:
                result.append(perturbation)
    return result


# ---------------------------------------------------------------------------------------- grouping and metrics
def group_samples(datasets: list[tuple[str, list]]) -> dict[str, list]:
    """`{"<dataset>": samples, "<dataset>/<subset>": samples, ...}` of labelled samples, in order."""
    groups: dict[str, list] = {}
    for name, samples in datasets:
        groups[name] = list(samples)
        subsets: dict[str, list] = {}
        for sample in samples:
            if sample.subset:
                subsets.setdefault(sample.subset, []).append(sample)
        for subset, members in subsets.items():
            groups[f"{name}/{subset}"] = members
    return groups


def group_metrics(groups: dict[str, list], scores: dict[str, float | None], threshold: float) -> dict[str, dict]:
    """Metrics of each group from per-image P(fake) (`None`: the image failed, left out)."""
    from deepvrm.trainers.metrics import binary_metrics

    result = {}
    for name, samples in groups.items():
        scored = [(s.label, scores[s.image]) for s in samples if scores.get(s.image) is not None]
        metrics = binary_metrics([label for label, _ in scored], [score for _, score in scored], threshold=threshold)
        metrics["n_failed"] = len(samples) - len(scored)
        result[name] = metrics
    return result


def metrics_text_table(rows: list[tuple[str, dict]], first_header: str = "dataset") -> str:
    """Fixed-width text table of metrics rows; undefined values print as n/a."""
    return text_table(*_metrics_cells(rows, first_header), align="lr")


def metrics_markdown_table(rows: list[tuple[str, dict]], first_header: str = "dataset") -> str:
    return markdown_table(*_metrics_cells(rows, first_header), align="lr")


def _metrics_cells(rows: list[tuple[str, dict]], first_header: str) -> tuple[list[str], list[list[str]]]:
    headers = [first_header] + [h for _, h in TABLE_COLUMNS]
    return headers, [[_display(name)] + [_cell(metrics.get(key)) for key, _ in TABLE_COLUMNS] for name, metrics in rows]


def _cell(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}"


def _table_rows(result: dict) -> list[tuple[str, dict]]:
    rows = [(name, metrics) for name, metrics in result.items() if name != PERTURBATIONS_KEY]
    for perturbation, per_dataset in result.get(PERTURBATIONS_KEY, {}).items():
        rows += [(f"{name} [{perturbation}]", metrics) for name, metrics in per_dataset.items()]
    return rows


# ---------------------------------------------------------------------------------------- report
def report_available() -> str | None:
    """None when --report can run, else why not."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "--report draws its plots with matplotlib, which is not installed: pip install matplotlib"
    return None


def write_report(directory: str, result: dict, groups: dict[str, list], scores: dict[str, float | None]) -> list[str]:
    """metrics.md (table), roc.png (ROC curves), scores.png (P(fake) histograms by class); returns the files."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_curve

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rows = _table_rows(result)
    markdown = ["# Deep-VRM evaluation", "", metrics_markdown_table(rows), "",
                "Accuracy at the chosen threshold; AP and ROC-AUC of P(fake) with fake as the positive class; "
                "n/a: not defined for this data (one class only).", ""]  # fmt: skip
    (out / "metrics.md").write_text("\n".join(markdown), encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")

    def class_scores(samples):
        real = [scores[s.image] for s in samples if s.label == 0 and scores.get(s.image) is not None]
        fake = [scores[s.image] for s in samples if s.label == 1 and scores.get(s.image) is not None]
        return np.asarray(real), np.asarray(fake)

    # ROC: one curve per group that has both classes.
    figure = Figure(figsize=(6, 6))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    drawn = 0
    for name, samples in groups.items():
        real, fake = class_scores(samples)
        if len(real) and len(fake):
            labels = np.r_[np.zeros(len(real)), np.ones(len(fake))]
            fpr, tpr, _ = roc_curve(labels, np.r_[real, fake])
            axes.plot(fpr, tpr, label=f"{name} (AUC {result[name]['roc_auc']:.3f})")
            drawn += 1
    if not drawn:
        axes.text(0.5, 0.5, "ROC undefined: no dataset has both classes", ha="center", va="center")
    else:
        axes.legend(loc="lower right", fontsize="small")
    axes.set(xlabel="false positive rate (real called fake)", ylabel="true positive rate (fake caught)", title="ROC of P(fake)")
    figure.savefig(out / "roc.png", dpi=100)

    # Histograms: one panel per group, real and fake overlaid.
    n = len(groups)
    cols = min(3, n)
    rows_n = -(-n // cols)
    figure = Figure(figsize=(4 * cols, 3 * rows_n))
    FigureCanvasAgg(figure)
    bins = np.linspace(0, 1, 21)
    for index, (name, samples) in enumerate(groups.items()):
        axes = figure.add_subplot(rows_n, cols, index + 1)
        real, fake = class_scores(samples)
        if len(real):
            axes.hist(real, bins=bins, alpha=0.6, label=f"real ({len(real)})", color="tab:blue")
        if len(fake):
            axes.hist(fake, bins=bins, alpha=0.6, label=f"fake ({len(fake)})", color="tab:red")
        axes.set_title(name, fontsize="small")
        axes.set_xlabel("P(fake)")
        axes.legend(fontsize="x-small")
    figure.tight_layout()
    figure.savefig(out / "scores.png", dpi=100)
    return [str(out / f) for f in ("metrics.md", "metrics.json", "roc.png", "scores.png")]


# ---------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepvrm evaluate",
        description="Accuracy, AP and ROC-AUC of a Deep-VRM model on labelled data.",
        epilog="Exit status: 0 every image scored, 1 some images could not be scored (left out of the metrics), 2 usage error.",
    )
    parser.add_argument("data", nargs="*", metavar="DATA", help="evaluation JSON/JSONL/CSV files or image folders (real/fake sub-folders)")
    parser.add_argument("--benchmark", nargs=2, metavar=("NAME", "ROOT"),
                        help=f"a benchmark as it lies on disk: {', '.join(BENCHMARKS)} (one row per generator, then the mean)")  # fmt: skip
    parser.add_argument("--split", help="the benchmark's split: genimage train or val (default val), drct2m train2017 or val2017 (default val2017)")
    parser.add_argument("--real", metavar="DIR", help="real images shared by the benchmark's generators (synthbuster: RAISE-1k; drct2m: "
                        "instead of ROOT/MSCOCO/<split>; cnnspot: for generators without reals)")  # fmt: skip
    parser.add_argument("--image-root", metavar="DIR", help="also look up relative image paths of JSON/CSV DATA here (after the file's folder and the working directory)")
    add_model_arguments(parser)
    add_scoring_arguments(parser)
    parser.add_argument("-o", "--output", help="write the metrics as JSON to this file")
    parser.add_argument("--report", metavar="DIR", help="also write metrics.md, roc.png and scores.png to DIR (needs matplotlib)")
    parser.add_argument("--perturb", nargs="+", default=[], metavar="SPEC", help=f"re-run on perturbed copies: {_PERTURB_HELP}")
    parser.add_argument("--scores", metavar="FILE", help="write each image's P(fake) as JSONL (path, dataset, subset, label, perturbation)")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the table")
    return parser


def read_datasets(paths: list[str], image_root: str | None = None, reserved: tuple[str, ...] = ()) -> list[tuple[str, list]]:
    """(unique dataset name, samples) per DATA argument and dataset inside it, no name among
    `reserved` (a benchmark's). Raises UsageError."""
    from deepvrm.trainers.data import read_samples

    datasets: dict[str, list] = {}
    for path in paths:
        try:
            samples = read_samples(path, image_root=image_root)
        except ValueError as error:
            raise UsageError(str(error)) from None
        by_name: dict[str, list] = {}
        for sample in samples:
            by_name.setdefault(sample.dataset or Path(path).stem, []).append(sample)
        for name, members in by_name.items():
            unique, n = name, 2
            while unique in datasets or unique == PERTURBATIONS_KEY or unique in reserved:
                unique, n = f"{name}-{n}", n + 1
            datasets[unique] = members
    return list(datasets.items())


def read_benchmark_argument(args):
    """The `Benchmark` of --benchmark NAME ROOT (None without it); its notes go to stderr. Raises UsageError."""
    from deepvrm.trainers.benchmarks import read_benchmark

    if not args.benchmark:
        if args.split or args.real:
            raise UsageError("--split and --real go with --benchmark NAME ROOT")
        return None
    name, root = args.benchmark
    if name.lower() not in BENCHMARKS:
        raise UsageError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    try:
        benchmark = read_benchmark(name, root, split=args.split, real=args.real)
    except ValueError as error:
        raise UsageError(str(error)) from None
    for note in benchmark.notes:
        print(f"deepvrm evaluate: {note}", file=sys.stderr)
    return benchmark


def with_mean_row(metrics: dict[str, dict], benchmark, scores: dict[str, float | None]) -> dict[str, dict]:
    """The metrics with `"<benchmark>/mean"` right after the benchmark's generator rows."""
    from deepvrm.trainers.benchmarks import mean_metrics

    if benchmark is None:
        return metrics
    result, keys = {}, set(benchmark.groups())
    for name, row in metrics.items():
        result[name] = row
        if name in keys:
            keys.discard(name)
            if not keys:
                result[f"{benchmark.name}/{MEAN}"] = mean_metrics(metrics, benchmark, scores)
    return result


def print_tables(result: dict, benchmark) -> None:
    """DATA's rows in one table; a benchmark's in the papers' layout, one table per condition:
    the benchmark's name over its generators' rows, then the mean."""
    rows = _table_rows(result)
    if benchmark is None:
        print(metrics_text_table(rows))
        return
    prefix = benchmark.name + "/"
    others = [(name, m) for name, m in rows if not name.startswith(prefix) and not name.split(" [")[0].startswith(prefix)]
    if others:
        print(metrics_text_table(others))
        print()
    conditions = [(None, result)] + list(result.get(PERTURBATIONS_KEY, {}).items())
    for index, (condition, metrics) in enumerate(conditions):
        generators = [(name[len(prefix):], m) for name, m in metrics.items() if name.startswith(prefix)]
        header = benchmark.name if condition is None else f"{benchmark.name} [{condition}]"
        if index:
            print()
        print(metrics_text_table(generators, first_header=header))


def read_inputs(args) -> tuple[dict[str, list], object, list[str]]:
    """(groups of labelled samples, the --benchmark or None, the distinct images to score, shared
    reals once) of the DATA and --benchmark arguments; notes go to stderr. Raises UsageError."""
    benchmark = read_benchmark_argument(args)
    datasets = read_datasets(args.data, args.image_root, reserved=(benchmark.name,) if benchmark else ())
    labelled, n_unlabelled = [], 0
    for name, samples in datasets:
        keep = [s for s in samples if s.label in (0, 1)]
        n_unlabelled += len(samples) - len(keep)
        if keep:
            labelled.append((name, keep))
    if n_unlabelled:
        print(f"deepvrm evaluate: {n_unlabelled} sample(s) without a label are left out.", file=sys.stderr)
    if not labelled and benchmark is None:
        raise UsageError("no labelled samples in " + ", ".join(args.data) + " (need real/fake folders, a label field or an assistant answer)")
    groups = group_samples(labelled)
    if benchmark is not None:
        groups.update(benchmark.groups())
    images = list(dict.fromkeys(s.image for samples in groups.values() for s in samples))  # shared reals once
    return groups, benchmark, images


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)

    def fail(message: str) -> int:
        print(f"deepvrm evaluate: error: {message}", file=sys.stderr)
        return 2

    # `--perturb jpeg:95 DATA` puts DATA into --perturb's list: a word without ":" is DATA.
    args.data += [spec for spec in args.perturb if ":" not in spec]
    args.perturb = [spec for spec in args.perturb if ":" in spec]
    if not args.data and not args.benchmark:
        return fail("no DATA given (evaluation JSON/JSONL/CSV files or image folders, or --benchmark NAME ROOT)")
    problem = check_model_arguments(args)
    if problem:
        return fail(problem)
    try:
        perturbations = parse_perturbations(args.perturb)
    except ValueError as error:
        return fail(str(error))
    if args.report and report_available():
        return fail(report_available())  # before hours of scoring, not after

    # Under `accelerate launch --num_processes N` the main process reads the data and hands the
    # image list to the others; each scores its share and the main process merges the scores.
    processes = Processes.start(args.device)
    groups = benchmark = images = None
    problem = None
    if processes.is_main:
        try:
            groups, benchmark, images = read_inputs(args)
        except UsageError as error:
            problem = str(error)
    problem, images = processes.broadcast((problem, images))
    if problem:
        return fail(problem) if processes.is_main else 2

    try:
        detector = load_detector(args, processes)
    except UsageError as error:
        return fail(str(error))

    conditions: list[tuple[str | None, Callable | None]] = [(None, None)] + [(p.name, p) for p in perturbations]
    mine = processes.share(range(len(images)))
    if processes.distributed and processes.is_main:
        print(f"deepvrm evaluate: scoring {len(images)} image(s) on {processes.describe()}.", file=sys.stderr)
    bar = progress_bar(len(mine) * len(conditions), args.no_progress, "evaluate") if processes.is_main else None
    scores_file = None
    if args.scores and processes.is_main:
        Path(args.scores).parent.mkdir(parents=True, exist_ok=True)
        scores_file = open(args.scores, "w", encoding="utf-8")
    by_image = {}
    for samples in (groups or {}).values():
        for sample in samples:
            by_image.setdefault(sample.image, sample)

    def write_score(path: str, score: float | None, error: str | None, perturbation: str | None) -> None:
        sample = by_image[path]
        row = {"path": path, "dataset": sample.dataset, "subset": sample.subset, "label": sample.label, "perturbation": perturbation}
        row.update({"error": error} if error is not None else {"score": score})
        scores_file.write(json.dumps(row, ensure_ascii=False) + "\n")
        scores_file.flush()

    result: dict = {}
    clean_scores: dict[str, float | None] = {}
    failures: dict[str, str] = {}
    try:
        for name, transform in conditions:
            scored = []  # (index in images, (score, error)) of this process's share
            for index, item in zip(mine, detector.score_paths([images[i] for i in mine], transform=transform)):
                scored.append((index, (item.score, item.error)))
                if scores_file and not processes.distributed:
                    write_score(item.path, item.score, item.error, name)  # as it comes; merged ones below
                if bar is not None:
                    bar.update(1)
            scores: dict[str, float | None] = {}
            for path, (score, error) in zip(images, unshare(processes.gather(scored), len(images))):
                scores[path] = score
                if error is not None:
                    failures.setdefault(path, error)
                if scores_file and processes.distributed:
                    write_score(path, score, error, name)
            if not processes.is_main:
                continue
            metrics = with_mean_row(group_metrics(groups, scores, args.threshold), benchmark, scores)
            if name is None:
                result.update(metrics)
                clean_scores = scores
            else:
                result.setdefault(PERTURBATIONS_KEY, {})[name] = metrics
    except KeyboardInterrupt:
        print("\ndeepvrm evaluate: interrupted.", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
        if scores_file:
            scores_file.close()
    if not processes.is_main:
        return processes.exit_status(0)  # the main process reports, writes and gives the status

    for path, reason in list(failures.items())[:20]:
        print(f"deepvrm evaluate: {_display(path)}: {reason}", file=sys.stderr)
    if len(failures) > 20:
        print(f"deepvrm evaluate: ... and {len(failures) - 20} more images could not be scored.", file=sys.stderr)
    if not args.quiet:
        print_tables(result, benchmark)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as file:
            json.dump(result, file, indent=2, ensure_ascii=False)
            file.write("\n")
        print(f"Metrics written to {args.output}.", file=sys.stderr)
    if args.report:
        written = write_report(args.report, result, groups, clean_scores)
        print(f"Report written to {args.report}: " + ", ".join(os.path.basename(f) for f in written) + ".", file=sys.stderr)
    return processes.exit_status(1 if failures else 0)


__all__ = ["Perturbation", "group_metrics", "group_samples", "main", "parse_perturbations", "write_report"]
