"""`deepvrm detect`: score images as real or fake.

    deepvrm detect PATH... [--model ID_OR_DIR] [--output FILE.jsonl|.csv] [--batch-size N]
                   [--device auto|cpu|cuda] [--dtype auto|float32|bfloat16|float16] [--threshold T]

PATH: image files (tried whatever their extension), folders (searched recursively for image
extensions) or glob patterns. Prints a table (path, label, P(fake)); `--output` writes one JSON
object (or CSV row) per image as soon as its batch is scored:

    {"path": ..., "label": "real"|"fake", "score": P(fake)}      or      {"path": ..., "error": reason}

Rerunning with the same `--output` skips the files already scored there and retries the failed
ones (their old error rows are replaced, so no path appears twice).

Exit status: 0 every file scored, 1 some files failed (the others are scored), 2 usage error.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import sys
import time
from pathlib import Path

from deepvrm.cli.options import UsageError, add_model_arguments, add_scoring_arguments, check_model_arguments, load_detector
from deepvrm.inference.files import is_image_name, is_os_junk, walk_images

# Show a progress bar when stderr is a terminal, or when a run is this long anyway (e.g. in logs).
PROGRESS_MIN_IMAGES = 100
_GLOB_CHARS = ("*", "?", "[")


# ---------------------------------------------------------------------------------------- inputs
def collect_inputs(specs: list[str]) -> tuple[list[str], list[str]]:
    """(paths to score, specs that matched nothing), paths in a stable order without duplicates.

    A spec is a file (taken whatever its extension; a dangling link or a missing file is kept so
    that it gets its error row), a folder (searched by `deepvrm.inference.files.walk_images`, as
    every command searches folders; a sub-folder named like an image with no images inside is kept
    so that it is reported, not silently dropped), or a glob pattern (`**` recurses); what a pattern
    matches is treated as if named, except OS junk (`Thumbs.db`, `._photo.jpg`).
    """
    paths: list[str] = []
    seen: set[str] = set()
    unmatched: list[str] = []

    def add(path: str) -> None:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            paths.append(path)

    for spec in specs:
        spec = os.path.expanduser(spec)
        if os.path.lexists(spec):
            matches = [spec]
        elif any(c in spec for c in _GLOB_CHARS):
            # What a pattern matches is treated as if named, but for the files an operating system
            # leaves beside pictures (Thumbs.db, ._photo.jpg, ...): those are never images.
            matches = sorted(m for m in glob.glob(spec, recursive=True) if not is_os_junk(os.path.basename(m.rstrip("/\\"))))
        else:
            matches = []
        if not matches:
            unmatched.append(spec)
            continue
        for match in matches:
            if os.path.isdir(match):
                found = _search_folder(match)
                if not found and match != spec and is_image_name(match.rstrip("/\\")):
                    add(match)  # a glob such as *.jpg matched a folder: report it
                for path in found:
                    add(path)
            else:
                add(match)
    return paths, unmatched


def _search_folder(root: str) -> list[str]:
    """The images `walk_images` finds, plus each empty sub-folder named like an image (so that an
    error row says it is a folder, rather than the name silently disappearing)."""
    found: list[str] = []
    for folder, subfolders, images in walk_images(root):
        if not images and not subfolders and folder != root and is_image_name(folder.rstrip("/\\")):
            found.append(folder)
        found += images
    return found


# ---------------------------------------------------------------------------------------- output
class ResultWriter:
    """Rows written and flushed one by one to a .jsonl (default) or .csv file."""

    def __init__(self, path: str, append: bool):
        self.path = path
        self.csv = path.lower().endswith(".csv")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        existed = os.path.exists(path) and os.path.getsize(path) > 0
        self.file = open(path, "a" if append else "w", encoding="utf-8", newline="" if self.csv else None)
        self.writer = None
        if self.csv:
            self.writer = csv.DictWriter(self.file, fieldnames=["path", "label", "score", "error"])
            if not (append and existed):
                self.writer.writeheader()
                self.file.flush()

    def write(self, row: dict) -> None:
        if self.csv:
            self.writer.writerow(_csv_safe(row))
        else:
            self.file.write(_json_line(row) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _json_line(row: dict) -> str:
    line = json.dumps(row, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # a file name that is not valid UTF-8: keep it as \udcxx escapes
        line = json.dumps(row, ensure_ascii=True)
    return line


def _csv_safe(row: dict) -> dict:
    return {k: (v.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if isinstance(v, str) else v) for k, v in row.items()}


def read_previous(path: str) -> tuple[list[dict], int]:
    """Rows of an earlier run's output that hold a score, and how many rows are dropped
    (error rows, to be retried, and a half-written last line of a crashed run)."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return [], 0
    kept, dropped = [], 0
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as file:
        if path.lower().endswith(".csv"):
            rows = list(csv.DictReader(file))
        else:
            rows = []
            for line in file:
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    rows.append(None)
    for row in rows:
        score = _as_score(row.get("score")) if isinstance(row, dict) else None
        if score is None or not row.get("path") or row.get("error"):
            dropped += 1
            continue
        kept.append({"path": row["path"], "label": row.get("label"), "score": score})
    return kept, dropped


def _as_score(value) -> float | None:
    try:
        score = float(value)
    except (TypeError, ValueError):
        return None
    return score if 0.0 <= score <= 1.0 else None


def _rewrite(path: str, rows: list[dict]) -> None:
    """Replace `path` by exactly `rows` (atomically: a crash leaves the old file or the new one)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    writer = ResultWriter(tmp, append=False)
    try:
        for row in rows:
            writer.write(row)
    finally:
        writer.close()
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------- table
class Table:
    """Rows printed as they come, with the path column sized from the known inputs."""

    def __init__(self, paths: list[str]):
        self.width = min(max([len("path")] + [len(_display(p)) for p in paths]), 70)
        self.header_done = False

    def _fit(self, text: str) -> str:
        return text if len(text) <= self.width else "..." + text[-(self.width - 3) :]

    def row(self, row: dict, write) -> None:
        if not self.header_done:
            write(f"{'path':<{self.width}}  {'label':<5}  P(fake)")
            self.header_done = True
        path = self._fit(_display(row["path"]))
        if row.get("error"):
            write(f"{path:<{self.width}}  {'ERROR':<5}  {row['error']}")
        else:
            write(f"{path:<{self.width}}  {row['label']:<5}  {row['score']:.4f}")


def _display(path: str) -> str:
    """A path printable on any terminal (undecodable bytes of a name as \\x escapes)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# ---------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepvrm detect",
        description="Score images as real or fake with a Deep-VRM model.",
        epilog="Exit status: 0 every file scored, 1 some files could not be scored (the rest were), 2 usage error.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (searched recursively) or glob patterns")
    add_model_arguments(parser)
    add_scoring_arguments(parser)
    parser.add_argument("-o", "--output", help="write one row per image to FILE.jsonl (or .csv); rerun to resume")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the table (the summary still goes to stderr)")
    return parser


def progress_bar(total: int, disable: bool, desc: str):
    """A tqdm bar on stderr when it is a terminal or the run is long; otherwise None."""
    if disable or total == 0:
        return None
    tty = sys.stderr.isatty()
    if not tty and total < PROGRESS_MIN_IMAGES:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, mininterval=0.5 if tty else 30.0, dynamic_ncols=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2): return, do not exit the caller
        return int(exit_.code or 0)

    def fail(message: str) -> int:
        print(f"deepvrm detect: error: {message}", file=sys.stderr)
        return 2

    problem = check_model_arguments(args)
    if problem:
        return fail(problem)

    paths, unmatched = collect_inputs(args.paths)
    if not paths:
        what = ", ".join(repr(_display(u)) for u in unmatched) if unmatched else "the given paths"
        return fail(f"no inputs: nothing to score in {what} (no such file, or no images in the folders)")

    kept, dropped = [], 0
    if args.output:
        if os.path.isdir(args.output):
            return fail(f"--output {args.output} is a folder; give a file name ending in .jsonl or .csv")
        kept, dropped = read_previous(args.output)
    previous = {os.path.abspath(row["path"]) for row in kept}
    todo = [p for p in paths if os.path.abspath(p) not in previous]
    skipped = len(paths) - len(todo)

    detector = None
    if todo:
        try:
            detector = load_detector(args)
        except UsageError as error:
            return fail(str(error))
    if skipped:
        print(f"Skipping {skipped} file(s) already scored in {args.output}.", file=sys.stderr)
    if dropped:
        _rewrite(args.output, kept)  # failed rows are retried below, not duplicated

    # Paths that matched nothing are failures of this run (reported and written), not usage errors.
    missing = [{"path": u, "error": "no such file, or a pattern that matched nothing"} for u in unmatched]
    writer = ResultWriter(args.output, append=True) if args.output else None
    table = None if args.quiet else Table(todo + unmatched)
    bar = progress_bar(len(todo) + len(missing), args.no_progress, "detect")

    def emit(line: str) -> None:
        if bar is not None:
            bar.write(line, file=sys.stdout)  # keeps the bar below the table
        else:
            print(line, flush=True)

    n_scored = n_fake = n_failed = 0
    started = time.perf_counter()
    try:
        for row in _rows(missing, detector.score_paths(todo) if detector else ()):
            if writer:
                writer.write(row)
            if table:
                table.row(row, emit)
            if "error" in row:
                n_failed += 1
                if table is None:
                    print(f"deepvrm detect: {_display(row['path'])}: {row['error']}", file=sys.stderr)
            else:
                n_scored += 1
                n_fake += row["label"] == "fake"
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        print("\ndeepvrm detect: interrupted; the rows written so far are kept (rerun to resume).", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
        if writer:
            writer.close()
    elapsed = time.perf_counter() - started
    rate = f", {n_scored / elapsed:.1f} images/s" if n_scored and elapsed > 0 else ""
    summary = f"Scored {n_scored} image(s): {n_fake} fake, {n_scored - n_fake} real{rate}"
    if skipped:
        summary += f"; {skipped} already scored"
    if n_failed:
        summary += f"; {n_failed} could not be scored"
    if args.output:
        summary += f". Results in {args.output}"
    print(summary + ".", file=sys.stderr)
    return 1 if n_failed else 0


def _rows(missing: list[dict], results):
    yield from missing
    for result in results:
        yield result.to_row()


__all__ = ["collect_inputs", "main", "read_previous"]
