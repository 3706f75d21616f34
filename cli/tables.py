"""Tables the commands print and write (evaluate's metrics, probe's and attribute's summaries), in
one fixed-width text form and one Markdown form:

    text_table(headers, rows, align="lr")      name     real  acc       (columns two spaces apart,
                                               -------  ----  ------     a rule under the header)
                                               test        8  0.7500
    markdown_table(headers, rows, align="lr")  | name | real | acc |     ("|" inside a cell escaped)
                                               |---|---:|---:|

Cells are printed with `str()`: the caller formats numbers. `align` gives one letter per column,
"l" (left) or "r" (right); its last letter holds for the columns after it (default: all left).
`deepvrm detect` prints its rows as each batch finishes instead, so it sizes its columns itself.
"""

from __future__ import annotations


def _alignments(align: str, count: int) -> str:
    if not align or set(align) - {"l", "r"}:
        raise ValueError(f"align is a string of 'l' and 'r', got {align!r}")
    return (align + align[-1] * count)[:count]


def text_table(headers: list[str], rows: list[list], align: str = "l") -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    sides = _alignments(align, len(headers))
    lines = ["  ".join(c.rjust(w) if side == "r" else c.ljust(w) for c, w, side in zip(row, widths, sides)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(headers: list[str], rows: list[list], align: str = "l") -> str:
    sides = _alignments(align, len(headers))

    def line(row) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"

    rule = "|" + "|".join("---:" if side == "r" else "---" for side in sides) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


__all__ = ["markdown_table", "text_table"]
