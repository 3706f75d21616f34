"""The one table renderer (deepvrm.cli.tables) of evaluate, probe, attribute and the demo model card,
checked against tables written out by hand."""

from __future__ import annotations

import pytest

from deepvrm.cli.tables import markdown_table, text_table


def test_text_table_pads_aligns_and_rules_the_header():
    text = text_table(["dataset", "n", "acc"], [["test", 8, "0.7500"], ["test/sdv4|val", 12, "n/a"]], align="lr")
    assert text.split("\n") == [
        "dataset         n     acc",
        "-------------  --  ------",
        "test            8  0.7500",
        "test/sdv4|val  12     n/a",
    ]
    # Left by default; trailing spaces are trimmed.
    assert text_table(["a", "bb"], [["xyz", ""]]).split("\n") == ["a    bb", "---  --", "xyz"]


def test_markdown_table_aligns_numbers_right_and_escapes_pipes():
    assert markdown_table(["dataset", "n"], [["a|b", 3]], align="lr").split("\n") == [
        "| dataset | n |",
        "|---|---:|",
        "| a\\|b | 3 |",
    ]
    assert markdown_table(["x", "y"], []).split("\n") == ["| x | y |", "|---|---|"]
    with pytest.raises(ValueError, match="align"):
        text_table(["x"], [], align="c")
