"""The file's tokens: positions, brackets, call arguments, and the text edits rendered over them."""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field

from hamr.frontends.cuda.model import Refusal
from hamr.frontends.cuda.parse import Parsed


@dataclass
class Edits:
    """Edits by token index: a replacement, and text before and after."""

    repl: dict[int, str] = field(default_factory=dict)
    pre: dict[int, str] = field(default_factory=dict)
    post: dict[int, str] = field(default_factory=dict)

    def replace(self, i: int, text: str) -> None:
        self.repl[i] = text

    def delete(self, i: int, j: int | None = None) -> None:
        for k in range(i, (i + 1) if j is None else j):
            self.repl[k] = ""

    def replace_range(self, i: int, j: int, text: str) -> None:
        for k in range(i, j):
            self.pre.pop(k, None)
            self.post.pop(k, None)
            self.repl[k] = ""
        self.repl[i] = text

    def before(self, i: int, text: str) -> None:
        self.pre[i] = self.pre.get(i, "") + text

    def after(self, i: int, text: str) -> None:
        self.post[i] = self.post.get(i, "") + text


class TokenView:
    """A parsed file's tokens by index, and their text with edits applied."""

    def __init__(self, parsed: Parsed):
        self.p = parsed
        self.t = parsed.tokens
        self.starts = [t.start for t in self.t]

    def idx(self, offset: int) -> int:
        return bisect_left(self.starts, offset)

    def end_idx(self, cursor) -> int:
        """One past the cursor's last token."""
        return bisect_left(self.starts, cursor.extent.end.offset)

    def span(self, cursor) -> tuple[int, int]:
        return self.idx(cursor.extent.start.offset), self.end_idx(cursor)

    def text(self, i: int, j: int) -> str:
        return self.p.text[self.t[i].start : self.t[j - 1].end] if j > i else ""

    def render(self, i: int, j: int, e: Edits) -> str:
        out: list[str] = []
        last = ""
        for k in range(i, j):
            gone = e.repl.get(k) == "" and not e.pre.get(k)
            if k > i and not gone and not (k - 1 in e.repl and last.endswith("(")):
                out.append(self.p.text[self.t[k - 1].end : self.t[k].start])
            for piece in (e.pre.get(k, ""), e.repl.get(k, self.t[k].text), e.post.get(k, "")):
                out.append(piece)
                last = piece or last
        return "".join(out)

    def in_file(self, c) -> bool:
        f = c.location.file
        return f is not None and f.name == self.p.filename


def sanitize(args: list[str]) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9]+", "_", a.replace("-", "m")).strip("_") for a in args)


def matching(tokens, i: int, open_: str, close: str) -> int:
    depth = 0
    for k in range(i, len(tokens)):
        t = tokens[k].text
        if t == open_:
            depth += 1
        elif t == close or (close == ">" and t == ">>"):
            depth -= 2 if t == ">>" else 1
            if depth <= 0:
                return k
    raise Refusal(tokens[i].line, open_, f"no matching {close}")


def split_args(tokens, lparen: int, rparen: int, sep: str = ",") -> list[tuple[int, int]]:
    """Token ranges of a call's arguments (top-level commas), or of a for header's parts (sep=";")."""
    out, depth, start = [], 0, lparen + 1
    for k in range(lparen + 1, rparen):
        t = tokens[k].text
        if t in "([{":
            depth += 1
        elif t in ")]}":
            depth -= 1
        elif t == sep and depth == 0:
            out.append((start, k))
            start = k + 1
    if start < rparen:
        out.append((start, rparen))
    return out
