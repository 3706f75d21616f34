"""The `--output` file of `deepvrm detect`: rows written as each batch finishes, read back to resume.

    writer = ResultWriter("results.csv", append=True); writer.write(row); writer.close()
    kept, dropped = read_previous("results.csv")   # raises NotDetectOutput for a file detect did not write

A row is `{"path": ..., "label": "real"|"fake", "score": P(fake)}` or `{"path": ..., "error": reason}`.

JSONL (every name not ending in .csv): one JSON object a line. A path that is not valid UTF-8 (its
undecodable bytes are U+DC80..U+DCFF in Python's `surrogateescape` form, as `os.listdir` gives them)
is written with `\\udcXX` escapes, so that `json.loads` gives back the very string, which `os`
functions turn back into the same bytes.

CSV: the header `path,label,score,error`, then one row a line; the file is UTF-8 and its cells are
made safe for spreadsheets and reversible (`csv_cell`, `from_csv_cell`):

- a cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return (which spreadsheets run as
  a formula: OWASP's CSV-injection advice) or with `'` gets a `'` in front, and nothing else changes:
  `=HYPERLINK(...).png` is written `'=HYPERLINK(...).png`, `'x.png` is written `''x.png`;
- a cell holding characters that are not text (bytes that are not UTF-8, control characters such
  as a newline or ESC, line separators, bidirectional-text controls) is written in an escaped form:
  `'\\` and then the text with `\\\\` for a backslash, `\\xHH` for an undecodable byte and `\\uHHHH`
  for such a character (`'\\caf\\xe9.png`, `'\\new\\u000aline.png`).

So reading a cell back undoes exactly what writing did: a cell beginning with `'\\` is unescaped, a
cell beginning with another `'` loses that one `'`, any other cell is the text itself.

Reading back keeps the rows that hold a score; it drops error rows (retried by the next run) and a
last line without its newline (what a run killed mid-write leaves: a cut-off row is never taken as a
result, even when it still parses, e.g. a score cut to fewer digits). A file that holds anything
else (an image, a training JSON, another CSV) raises `NotDetectOutput` and is left alone.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

CSV_FIELDS = ("path", "label", "score", "error")
CSV_HEADER = ",".join(CSV_FIELDS)
_ROW_KEYS = frozenset(CSV_FIELDS)
_FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")
_ESCAPED = "'\\"
# A line of ours is far shorter; a file without a line break this early is not a detect output.
_HEAD_BYTES = 1 << 20


class NotDetectOutput(ValueError):
    """`--output` names a file that `deepvrm detect` did not write; the message says what it holds."""


def is_csv(path: str) -> bool:
    return os.fspath(path).lower().endswith(".csv")


# ---------------------------------------------------------------------------------------- text that is not text
def _is_unsafe(char: str) -> bool:
    """Characters that are not plain text in a file name: control characters (C0, DEL, C1),
    surrogates (bytes that are not UTF-8), line/paragraph separators, bidirectional-text controls
    (which reorder what a terminal or a spreadsheet shows)."""
    code = ord(char)
    return (
        code < 0x20
        or 0x7F <= code <= 0x9F
        or 0xD800 <= code <= 0xDFFF
        or code in (0x061C, 0x200E, 0x200F, 0x2028, 0x2029)
        or 0x202A <= code <= 0x202E
        or 0x2066 <= code <= 0x2069
    )


def _is_undecodable_byte(char: str) -> bool:
    return 0xDC80 <= ord(char) <= 0xDCFF  # surrogateescape's stand-in for byte 0x80..0xFF


def printable(text: str) -> str:
    """`text` for a terminal: every unsafe character (see `_is_unsafe`) as a visible escape
    (`\\n`, `\\x1b`, `\\xe9` for an undecodable byte, `\\u202e`); nothing else changes. For showing
    only: backslashes are not escaped, so it is not reversible."""
    if not any(_is_unsafe(c) for c in text):
        return text
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    out = []
    for c in text:
        if not _is_unsafe(c):
            out.append(c)
        elif c in named:
            out.append(named[c])
        elif _is_undecodable_byte(c):
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        elif ord(c) < 0x100:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(f"\\u{ord(c):04x}")
    return "".join(out)


# ---------------------------------------------------------------------------------------- CSV cells
def csv_cell(text: str) -> str:
    """The CSV cell for `text` (see the module docstring); `from_csv_cell` undoes it."""
    if any(_is_unsafe(c) for c in text):
        out = [_ESCAPED]
        for c in text:
            if c == "\\":
                out.append("\\\\")
            elif not _is_unsafe(c):
                out.append(c)
            elif _is_undecodable_byte(c):
                out.append(f"\\x{ord(c) - 0xDC00:02x}")
            else:
                out.append(f"\\u{ord(c):04x}")
        return "".join(out)
    if text.startswith(_FORMULA_LEADS + ("'",)):
        return "'" + text
    return text


_UNESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4})")


def from_csv_cell(cell: str) -> str:
    """The text a cell written by `csv_cell` holds. Raises ValueError for a malformed escaped cell."""
    if cell.startswith(_ESCAPED):
        body = cell[len(_ESCAPED) :]
        if _UNESCAPE.sub("", body).count("\\"):
            raise ValueError(f"malformed escaped cell {cell!r}")

        def unescape(match: re.Match) -> str:
            code = match.group(1)
            if code == "\\":
                return "\\"
            if code[0] == "x":
                return chr(0xDC00 + int(code[1:], 16))
            return chr(int(code[1:], 16))

        return _UNESCAPE.sub(unescape, body)
    if cell.startswith("'"):
        return cell[1:]
    return cell


# ---------------------------------------------------------------------------------------- writing
def _json_line(row: dict) -> str:
    # allow_nan=False: a NaN score is not JSON (the Detector turns non-finite scores into errors).
    line = json.dumps(row, ensure_ascii=False, allow_nan=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # a file name that is not valid UTF-8: keep it as \udcxx escapes
        line = json.dumps(row, ensure_ascii=True, allow_nan=False)
    return line


def _csv_row(row: dict) -> dict:
    return {k: (csv_cell(v) if isinstance(v, str) else v) for k, v in row.items()}


class ResultWriter:
    """Rows written and flushed one by one to a .jsonl (default) or .csv file; `csv` (default: from
    the name) says which, so that a temporary file can be written in its target's format."""

    def __init__(self, path: str, append: bool, csv_format: bool | None = None):
        self.path = path
        self.csv = is_csv(path) if csv_format is None else csv_format
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        existed = os.path.exists(path) and os.path.getsize(path) > 0
        self.file = open(path, "a" if append else "w", encoding="utf-8", newline="" if self.csv else None)
        self.writer = None
        if self.csv:
            self.writer = csv.DictWriter(self.file, fieldnames=list(CSV_FIELDS), lineterminator="\r\n")
            if not (append and existed):
                self.writer.writeheader()
                self.file.flush()

    def write(self, row: dict) -> None:
        if self.csv:
            self.writer.writerow(_csv_row(row))
        else:
            self.file.write(_json_line(row) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def rewrite(path: str, rows: list[dict]) -> None:
    """Replace `path` by exactly `rows`, in the format its name gives (atomically: a crash leaves
    the old file or the new one)."""
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.tmp-{os.getpid()}")
    writer = ResultWriter(tmp, append=False, csv_format=is_csv(path))
    try:
        for row in rows:
            writer.write(row)
    finally:
        writer.close()
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------- other processes' parts
def _part_suffix(path: str) -> str:
    return ".csv" if is_csv(path) else ".jsonl"


def part_path(path: str, index: int) -> str:
    """Where process `index` (> 0) of a multi-process run (`accelerate launch`) writes its rows
    while it scores: a hidden file beside `path`, in `path`'s format. The main process writes into
    `path` itself and, at the end, puts every process's rows into it in input order."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.part-{index}{_part_suffix(path)}")


def leftover_parts(path: str) -> list[str]:
    """The part files an interrupted multi-process run left beside `path`, by process index (a
    rerun, with any number of processes, takes their rows as already scored)."""
    folder, name = os.path.split(os.path.abspath(path))
    pattern = re.compile(rf"\.{re.escape(name)}\.part-(\d+){re.escape(_part_suffix(path))}")
    try:
        found = [(int(m.group(1)), entry) for entry in os.listdir(folder) if (m := pattern.fullmatch(entry))]
    except OSError:
        return []
    return [os.path.join(folder, entry) for _, entry in sorted(found)]


# ---------------------------------------------------------------------------------------- reading back
def _as_score(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        score = float(value)
    except (TypeError, ValueError):
        return None
    return score if 0.0 <= score <= 1.0 else None  # also refuses NaN


def _compatible(text: str, prefix: str) -> bool:
    """Whether `text` begins with `prefix` or is cut off inside it."""
    return text.startswith(prefix) or prefix.startswith(text)


def _not_ours(path: str, why: str) -> NotDetectOutput:
    return NotDetectOutput(
        f"--output {printable(path)} exists and is not a `deepvrm detect` output ({why}); it is left as it is. "
        "Give a new file name (or an empty file, or an earlier detect output to resume)."
    )


def read_previous(path: str) -> tuple[list[dict], int]:
    """Rows of an earlier run's output that hold a score, and how many rows are dropped (error rows,
    to be retried, and a half-written last line). A missing or empty file has none. Raises
    `NotDetectOutput` when the file holds anything but detect rows (see the module docstring)."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return [], 0
    parse = _read_csv if is_csv(path) else _read_jsonl
    with open(path, "rb") as file:
        # Look at the first line before reading the rest: a photo or a video named by mistake is
        # refused at once, not read whole.
        head = file.read(_HEAD_BYTES)
        first, newline, _ = head.partition(b"\n")
        if newline:
            parse(path, first.decode("utf-8", "surrogateescape"), "")
        elif len(head) == _HEAD_BYTES:
            raise _not_ours(path, f"no line break in its first {_HEAD_BYTES >> 20} MiB")
        data = head + file.read()
    if not data.strip():
        return [], 1  # only blank lines: rewritten (with the CSV header) rather than appended to
    complete, newline, partial = data.rpartition(b"\n")
    if not newline:  # not a single finished line
        complete, partial = b"", data
    rows, dropped = parse(path, complete.decode("utf-8", "surrogateescape"), partial.decode("utf-8", "surrogateescape"))
    kept = []
    for row in rows:
        score = _as_score(row.get("score"))
        if score is None or not row.get("path") or row.get("error"):
            dropped += 1
            continue
        kept.append({"path": row["path"], "label": row.get("label"), "score": score})
    return kept, dropped


def _is_detect_row(value) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("path"), str)
        and set(value) <= _ROW_KEYS
        and ("score" in value or "error" in value)
    )


def _read_jsonl(path: str, text: str, partial: str) -> tuple[list[dict], int]:
    rows = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        if not _is_detect_row(value):
            if number == 1 and line.rstrip("\r") == CSV_HEADER:
                raise _not_ours(path, "it is a detect CSV output; a name ending in .csv reads and writes CSV")
            raise _not_ours(path, f"line {number} is not a detect row {{\"path\": ..., \"score\"|\"error\": ...}}")
        rows.append(value)
    dropped = 0
    if partial.strip():
        # A cut-off row still begins like one; a file whose only line merely lacks its newline
        # (a one-line JSON, a text file) must not be taken for one.
        head = re.sub(r"\s+", "", partial[:64])
        if not rows and not _compatible(head, '{"path":'):
            raise _not_ours(path, 'its only line is not a detect row {"path": ..., "score"|"error": ...}')
        dropped = 1
    return rows, dropped


def _read_csv(path: str, text: str, partial: str) -> tuple[list[dict], int]:
    lines = text.split("\n") if text else []
    first = lines[0] if lines else partial
    if first.rstrip("\r") != CSV_HEADER and not (not lines and _compatible(first, CSV_HEADER)):
        raise _not_ours(path, f"its first line is not the header {CSV_HEADER}")
    rows, dropped = [], 1 if partial.strip() else 0  # a cut-off last line (or header): rewritten
    for line in lines[1:]:
        # One row a line (csv_cell leaves no line break in a cell), so a bad line costs only itself.
        if not line.strip():
            continue
        try:
            cells = next(csv.reader([line.rstrip("\r")], strict=True))
            if len(cells) != len(CSV_FIELDS):
                raise ValueError(cells)
            rows.append(dict(zip(CSV_FIELDS, (from_csv_cell(c) for c in cells))))
        except (csv.Error, ValueError):
            dropped += 1  # a row this format cannot hold: scored again
    return rows, dropped


__all__ = [
    "CSV_HEADER", "NotDetectOutput", "ResultWriter", "csv_cell", "from_csv_cell", "leftover_parts", "part_path", "printable",
    "read_previous", "rewrite",
]  # fmt: skip
