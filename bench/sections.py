"""Replacing one generated section of a markdown page, between its begin and end markers."""

from __future__ import annotations

from pathlib import Path


def write_section(doc: Path, begin: str, end: str, section: str) -> None:
    """`section` (which starts with `begin` and ends with `end`) replaces the old one, or is appended."""
    text = doc.read_text()
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    doc.write_text(text)
