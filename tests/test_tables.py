"""Tests of byol_tf/utils/tables.py: aligned text columns and Markdown tables."""

import pytest

from byol_tf.utils import tables


def test_aligned_defaults_to_left_columns_as_wide_as_their_widest_cell():
    text = tables.aligned([("name", "n"), ("a", 12345), ("bb", "")])
    assert text == "name  n\na     12345\nbb"  # trailing spaces are dropped


def test_aligned_right_columns_fixed_widths_indent_and_separator():
    rows = [("", "x"), ("label", "1.5"), ("much too long", "22")]
    text = tables.aligned(rows, align="lr", widths=(8, 5), separator="|", indent="  ")
    assert text.splitlines() == [
        "          |    x",
        "  label   |  1.5",
        "  much too long|   22",  # a wider cell is not cut
    ]


def test_aligned_rejects_a_bad_align():
    with pytest.raises(ValueError, match="one of 'lr' per column"):
        tables.aligned([("a", "b")], align="l")
    with pytest.raises(ValueError, match="one of 'lr' per column"):
        tables.aligned([("a", "b")], align="lc")


def test_markdown():
    assert tables.markdown(("a", "b c"), [(1, "x"), ("", 2.5)]) == "| a | b c |\n|---|---|\n| 1 | x |\n|  | 2.5 |"
