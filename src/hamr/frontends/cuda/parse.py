"""libclang: a .cu file's translation unit (device side, no CUDA toolkit), its tokens and its diagnostics."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hamr.errors import KernelSourceError

INCLUDE = re.compile(r"(?m)^[ \t]*#[ \t]*include\b[^\n]*")
ARGS = [
    "-x", "cuda", "--cuda-device-only", "--cuda-gpu-arch=sm_80", "-nocudainc", "-nocudalib",
    "--cuda-path=/nonexistent", "-nostdinc", "-nobuiltininc", "-std=c++17", "-w",
]  # fmt: skip


def cindex():
    try:
        from clang import cindex
    except ImportError:
        raise KernelSourceError("converting CUDA needs libclang: pip install 'hamr[kernels]'") from None
    return cindex


@dataclass(frozen=True)
class Token:
    text: str
    start: int  # offsets into Parsed.text
    end: int
    line: int


@dataclass
class Parsed:
    """A parsed .cu file. `text` is the file with its #include lines blanked (same offsets as the file)."""

    filename: str
    text: str
    tu: object
    tokens: list[Token]
    includes: list[tuple[int, str]]  # (line, directive)
    errors: list[tuple[int, str]]  # (line, message): clang's errors in this file

    def line_of(self, offset: int) -> int:
        return self.text.count("\n", 0, offset) + 1


def _shim() -> str:
    return str(resources.files("hamr.frontends.cuda").joinpath("shim.h"))


def parse(text: str, filename: str) -> Parsed:
    ci = cindex()
    includes = [(text.count("\n", 0, m.start()) + 1, m.group(0).strip()) for m in INCLUDE.finditer(text)]
    blanked = INCLUDE.sub(lambda m: " " * len(m.group(0)), text)
    name = str(Path(filename).name) or "kernel.cu"
    try:
        tu = ci.Index.create().parse(
            name,
            args=[*ARGS, "-include", _shim()],
            unsaved_files=[(name, blanked)],
            options=ci.TranslationUnit.PARSE_DETAILED_PROCESSING_RECORD,
        )
    except ci.TranslationUnitLoadError as exc:
        raise KernelSourceError(f"{filename}: libclang cannot parse this file ({exc})") from None
    tokens = []
    for t in tu.get_tokens(extent=tu.cursor.extent):
        loc = t.extent
        if loc.start.file is None or loc.start.file.name != name:
            continue
        tokens.append(Token(t.spelling, loc.start.offset, loc.end.offset, loc.start.line))
    errors = []
    for d in tu.diagnostics:
        if d.severity >= ci.Diagnostic.Error:
            in_file = d.location.file is not None and d.location.file.name == name
            errors.append((d.location.line if in_file else 0, d.spelling))
    return Parsed(name, blanked, tu, tokens, includes, errors)
