"""What the converter passes around: the file's functions, their rewritten instances, and a refusal."""

from __future__ import annotations

from dataclasses import dataclass, field

GLOBAL, LOCAL = "__global", "__local"


class Refusal(Exception):
    def __init__(self, line: int, construct: str, detail: str):
        super().__init__(f"{line}: {construct}: {detail}")
        self.line, self.construct, self.detail = line, construct, detail


@dataclass
class Func:
    """A function definition of the .cu file."""

    cursor: object
    name: str
    kind: str  # kernel | device | host
    tparams: list[str]
    start: int  # token indices: first token, name, the parameter list's parentheses, the body's braces
    name_tok: int
    lparen: int
    rparen: int
    body: int
    end: int  # one past the closing brace


@dataclass
class Hidden:
    """Local memory a helper declares (`static __shared__`): the kernel declares it and passes it down."""

    name: str  # the argument's name in callers
    decl: str  # its declaration in the kernel
    elem: str
    rest: str  # the dimensions after the first
    param: str = ""  # the helper's parameter

    def as_param(self, name: str) -> str:
        return f"{LOCAL} {self.elem} *{name}" if not self.rest else f"{LOCAL} {self.elem} (*{name}){self.rest}"


@dataclass
class Instance:
    """One function rewritten for one set of template arguments and pointer address spaces."""

    func: Func
    subst: dict[str, str]
    name: str
    spaces: tuple = ()
    text: str = ""
    hidden: list[Hidden] = field(default_factory=list)
    helpers: list[Instance] = field(default_factory=list)
    constructs: list[tuple[int, str, str]] = field(default_factory=list)  # (line, construct, detail)
