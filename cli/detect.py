"""`deepvrm detect`: score images as real or fake.

    deepvrm detect PATH... [--model ID_OR_DIR] [--output FILE.jsonl|.csv] [--batch-size N]
                   [--device auto|cpu|cuda] [--dtype auto|float32|bfloat16|float16] [--threshold T]

PATH: image files (tried whatever their extension), folders (searched recursively for image
extensions) or glob patterns. Prints a table (path, label, P(fake)); `--output` writes one JSON
object (or CSV row) per image as soon as its batch is scored:

    {"path": ..., "label": "real"|"fake", "score": P(fake)}      or      {"path": ..., "error": reason}

Rerunning with the same `--output` skips the files already scored there and retries the failed
ones (their old error rows are replaced, so no path appears twice) and a last row cut off by a
crash. `--output` refuses (exit 2) a file that is not empty and not a detect output, rather than
overwrite it. The file format, CSV's formula-safe and reversible cells included, is described in
`deepvrm.cli.results`. A score that is not a finite number is an error row, not a verdict.

Several processes and GPUs: `accelerate launch --num_processes N -m deepvrm.cli detect ...` (or
torchrun) scores every N-th file in each process, on its own device. The main process prints the
table, in input order, once all are done, and writes `--output`: its own rows as they come, while
each other process writes its rows to a hidden part file beside it (`.NAME.part-K.jsonl`); at the
end the main process puts every row into `--output` in input order and removes the parts, so the
file is the one a single process writes. A rerun after an interruption, with any number of
processes, counts the rows of the output and of the parts left beside it as scored
(`deepvrm.inference.processes`).

Exit status: 0 every file scored, 1 some files failed (the others are scored), 2 usage error.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from dataclasses import dataclass

from deepvrm.cli.options import UsageError, add_model_arguments, add_scoring_arguments, check_model_arguments, load_detector
from deepvrm.cli.results import NotDetectOutput, ResultWriter, leftover_parts, part_path, printable, read_previous, rewrite
from deepvrm.inference.files import is_image_name, is_os_junk, walk_images
from deepvrm.inference.processes import Processes, unshare

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
            write(f"{path:<{self.width}}  {'ERROR':<5}  {_display(row['error'])}")
        else:
            write(f"{path:<{self.width}}  {row['label']:<5}  {row['score']:.4f}")


def _display(text: str) -> str:
    """A path (or message) printable on any terminal: undecodable bytes, control characters (a
    newline would split the table, ESC sequences would reach the terminal), line separators and
    bidirectional-text controls as visible escapes (`deepvrm.cli.results.printable`)."""
    return printable(text)


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

    # Under `accelerate launch --num_processes N` the main process finds the inputs and reads the
    # earlier output; each process scores every N-th of the rest, the main one merges.
    processes = Processes.start(args.device)
    plan, problem = None, None
    if processes.is_main:
        try:
            plan = _plan(args)
        except UsageError as error:
            problem = str(error)
    problem, todo = processes.broadcast((problem, plan.todo if plan else None))
    if problem:
        return fail(problem) if processes.is_main else 2

    detector = None
    if todo:
        try:
            detector = load_detector(args, processes)
        except UsageError as error:
            return fail(str(error))
    if plan is not None:  # the main process
        if plan.skipped:
            print(f"Skipping {plan.skipped} file(s) already scored in {args.output}.", file=sys.stderr)
        if plan.dropped or plan.parts:
            rewrite(args.output, plan.kept)  # failed and cut-off rows are retried below, not duplicated
            for part in plan.parts:
                os.remove(part)  # their rows are in the output now
        if processes.distributed and todo:
            print(f"deepvrm detect: scoring {len(todo)} file(s) on {processes.describe()}.", file=sys.stderr)
    processes.wait()  # no process writes its part before the main one has merged the old parts

    # Paths that matched nothing are failures of this run (reported and written), not usage errors.
    missing = [{"path": u, "error": "no such file, or a pattern that matched nothing"} for u in plan.unmatched] if plan else []
    mine = processes.share(range(len(todo)))
    writer = None
    if args.output:
        target = args.output if processes.is_main else part_path(args.output, processes.index)
        writer = ResultWriter(target, append=processes.is_main)
    live = not processes.distributed  # one process prints rows as they come; several, in order at the end
    table = None if args.quiet or not processes.is_main else Table(todo + (plan.unmatched if plan else []))
    bar = progress_bar(len(mine) + len(missing), args.no_progress, "detect") if processes.is_main else None

    def emit(line: str) -> None:
        if bar is not None:
            bar.write(line, file=sys.stdout)  # keeps the bar below the table
        else:
            print(line, flush=True)

    def show(row: dict) -> None:
        if table:
            table.row(row, emit)
        elif "error" in row:
            print(f"deepvrm detect: {_display(row['path'])}: {_display(row['error'])}", file=sys.stderr)

    started = time.perf_counter()
    scored: list[tuple[int, dict]] = []  # (index in todo, row) of this process's share
    try:
        results = detector.score_paths([todo[i] for i in mine]) if detector else ()
        for index, row in zip([None] * len(missing) + mine, _rows(missing, results)):
            if writer:
                writer.write(row)
            if index is not None:
                scored.append((index, row))
            if live:
                show(row)
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
    rows = missing + unshare(processes.gather(scored), len(todo))
    if not processes.is_main:
        return processes.exit_status(0)  # the main process writes, reports and gives the status
    if processes.distributed:
        if args.output:
            rewrite(args.output, plan.kept + rows)  # every process's rows, in input order
            for index in range(1, processes.count):
                if os.path.exists(part_path(args.output, index)):
                    os.remove(part_path(args.output, index))
        for row in rows:
            show(row)
    elapsed = time.perf_counter() - started
    n_failed = sum(1 for row in rows if "error" in row)
    n_scored = len(rows) - n_failed
    n_fake = sum(1 for row in rows if row.get("label") == "fake")
    rate = f", {n_scored / elapsed:.1f} images/s" if n_scored and elapsed > 0 else ""
    summary = f"Scored {n_scored} image(s): {n_fake} fake, {n_scored - n_fake} real{rate}"
    if plan.skipped:
        summary += f"; {plan.skipped} already scored"
    if n_failed:
        summary += f"; {n_failed} could not be scored"
    if args.output:
        summary += f". Results in {args.output}"
    print(summary + ".", file=sys.stderr)
    return processes.exit_status(1 if n_failed else 0)


@dataclass
class Plan:
    """What a run does: the files to score (`todo`), the patterns that matched nothing, the rows of
    an earlier output (and of the parts an interrupted multi-process run left) that are kept, and
    how many rows of it are dropped (error rows, retried; a cut-off last line)."""

    todo: list[str]
    unmatched: list[str]
    kept: list[dict]
    dropped: int
    parts: list[str]
    skipped: int


def _plan(args) -> Plan:
    """The `Plan` of the command line (reads, writes nothing). Raises UsageError."""
    paths, unmatched = collect_inputs(args.paths)
    if not paths:
        what = ", ".join(repr(_display(u)) for u in unmatched) if unmatched else "the given paths"
        raise UsageError(f"no inputs: nothing to score in {what} (no such file, or no images in the folders)")
    kept, dropped, parts = [], 0, []
    if args.output:
        if os.path.isdir(args.output):
            raise UsageError(f"--output {args.output} is a folder; give a file name ending in .jsonl or .csv")
        parts = leftover_parts(args.output)
        for path in [args.output, *parts]:
            try:
                rows, n_dropped = read_previous(path)  # refuses a file detect did not write
            except NotDetectOutput as error:
                raise UsageError(str(error)) from None
            except OSError as error:
                raise UsageError(f"cannot read --output {path}: {error.strerror or error}") from None
            known = {os.path.abspath(row["path"]) for row in kept}
            kept += [row for row in rows if os.path.abspath(row["path"]) not in known]
            dropped += n_dropped
    previous = {os.path.abspath(row["path"]) for row in kept}
    todo = [p for p in paths if os.path.abspath(p) not in previous]
    return Plan(todo, unmatched, kept, dropped, parts, skipped=len(paths) - len(todo))


def _rows(missing: list[dict], results):
    yield from missing
    for result in results:
        yield result.to_row()


__all__ = ["collect_inputs", "main", "read_previous"]
