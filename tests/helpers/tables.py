"""Markdown tables as a reader's renderer sees them: every pipe table of a text well formed (a header, a separator
row with as many cells, every row with as many cells) and rendered as a table by Python-Markdown."""

from __future__ import annotations

import re

import markdown

SEPARATOR = re.compile(r"\|(\s*:?-+:?\s*\|)+")


def cells(line: str) -> list[str]:
    """The cells of a table row (an escaped \\| is text, not a border)."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def check_tables(text: str) -> int:
    """Assert that every block of `|` lines in `text` is a well-formed table that renders as one; their number."""
    blocks: list[list[str]] = []
    for line, previous in zip(text.splitlines(), ["", *text.splitlines()], strict=False):
        if line.startswith("|"):
            if previous.startswith("|"):
                blocks[-1].append(line)
            else:
                blocks.append([line])
    for block in blocks:
        width = len(cells(block[0]))
        assert len(block) >= 2 and SEPARATOR.fullmatch(block[1].strip()), block[:2]
        assert [len(cells(row)) for row in block] == [width] * len(block), (block[0], block[1:])
    assert markdown.markdown(text, extensions=["tables"]).count("<table>") == len(blocks)
    return len(blocks)
