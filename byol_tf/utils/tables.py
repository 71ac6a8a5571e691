"""Text tables of the printed reports: aligned columns, or Markdown.

Example:

```python
print(tables.aligned([("encoder", "top-1"), ("BYOL", "71.2%")], align="lr"))
# encoder  top-1
# BYOL     71.2%
```
"""

ALIGNS = "lr"


def aligned(rows, align=None, widths=None, separator="  ", indent=""):
    """Formats rows of cells as lines of aligned columns.

    Args:
        rows: sequence of rows, each a sequence of cells (converted with `str`);
            the first row is usually the header.
        align: one character per column, `"l"` (left) or `"r"` (right).
            Defaults to all left.
        widths: width of each column. Defaults to the widest cell of the
            column; a cell wider than a given width is not cut.
        separator: text between two columns. Defaults to two spaces.
        indent: text before the first column. Defaults to none.

    Returns:
        The table as one string, lines joined by `"\\n"`, each without trailing
        spaces.
    """
    rows = [[str(cell) for cell in row] for row in rows]
    columns = max((len(row) for row in rows), default=0)
    align = align or "l" * columns
    if len(align) != columns or set(align) - set(ALIGNS):
        raise ValueError(f"`align` must have one of {ALIGNS!r} per column ({columns}). Received: align={align!r}")
    if widths is None:
        widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(columns)]
    lines = []
    for row in rows:
        cells = [cell.ljust(w) if a == "l" else cell.rjust(w) for cell, a, w in zip(row, align, widths)]
        lines.append((indent + separator.join(cells)).rstrip())
    return "\n".join(lines)


def markdown(header, rows):
    """Formats a header and rows of cells as a Markdown table (cells unpadded).

    Args:
        header: the column names.
        rows: sequence of rows, each a sequence of cells (converted with `str`).

    Returns:
        The table as one string, lines joined by `"\\n"`.
    """
    lines = [_markdown_row(header), "|" + "---|" * len(header)]
    return "\n".join(lines + [_markdown_row(row) for row in rows])


def _markdown_row(cells):
    return "| " + " | ".join(str(cell) for cell in cells) + " |"
