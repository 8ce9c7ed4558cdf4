"""hamr kernel C, the portable kernel form: a source text, its kernels and their parameters.

The form is OpenCL C 1.2 spellings plus hamr's ``H_*`` macros (docs/kernels.md). This module only
reads it: it finds the ``__kernel`` functions and the ``H_DEVICE`` helpers, their parameters, and
which of them synchronise (barriers, warp shuffles), so that each dialect renderer can write the
source its own way and the runtime can marshal a launch's arguments. It compiles nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from hamr.errors import KernelSourceError

TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<directive>\#(?:[^\n\\]|\\.)*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<name>[A-Za-z_]\w*)
  | (?P<number>\.?\d(?:[\w.]|[eEpP][+-])*)
  | (?P<punct>->|\+\+|--|<<=|>>=|<<|>>|[<>=!&|^+\-*/%]=|&&|\|\||[^\s\w])
    """,
    re.VERBOSE | re.DOTALL,
)

SCALAR_TYPES = {
    "char": "int8", "uchar": "uint8", "short": "int16", "ushort": "uint16", "int": "int32", "uint": "uint32",
    "long": "int64", "ulong": "uint64", "float": "float32", "double": "float64", "unsigned": "uint32",
    "unsigned int": "uint32", "unsigned char": "uint8", "unsigned short": "uint16", "unsigned long": "uint64",
    "signed char": "int8", "size_t": "uint64", "bool": "uint8",
}  # fmt: skip
VECTOR_TYPES = {f"{base}{n}": (SCALAR_TYPES[base], n) for base in ("float", "double", "int", "uint") for n in (2, 4)}
SHUFFLES = frozenset({"H_SHFL", "H_SHFL_DOWN", "H_SHFL_UP", "H_SHFL_XOR", "H_SYNCWARP", "H_BALLOT", "H_ANY", "H_ALL"})
SYNCS = SHUFFLES | {"barrier"}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)


def tokens(text: str) -> list[Token]:
    """The significant tokens of `text` (no spaces, comments or preprocessor lines), with their offsets."""
    out = []
    for match in TOKEN.finditer(text):
        kind = match.lastgroup
        if kind not in ("space", "comment", "directive"):
            out.append(Token(kind, match.group(), match.start()))
    return out


@dataclass(frozen=True)
class Param:
    """One parameter of a kernel: a buffer (``__global T *``), a scalar, or the dynamic local buffer."""

    name: str
    kind: str  # buffer | scalar | local
    ctype: str  # the element type of a buffer or local, else the scalar's type
    const: bool = False

    @property
    def dtype(self) -> str:
        """The numpy element type; a vector element counts as its scalar."""
        if self.ctype in VECTOR_TYPES:
            return VECTOR_TYPES[self.ctype][0]
        return SCALAR_TYPES[self.ctype]

    @property
    def lanes(self) -> int:
        return VECTOR_TYPES[self.ctype][1] if self.ctype in VECTOR_TYPES else 1


@dataclass(frozen=True)
class Function:
    """A ``__kernel`` or an ``H_DEVICE`` helper: where its parameter list and body lie in the text."""

    name: str
    is_kernel: bool
    start: int  # offset of its first token (__kernel or H_DEVICE)
    params_span: tuple[int, int]  # offsets just inside the parentheses
    body_span: tuple[int, int]  # offsets of '{' and just after '}'
    params: tuple[Param, ...]
    line: int
    calls: frozenset[str] = frozenset()
    uses: frozenset[str] = frozenset()  # the synchronising builtins it names itself

    @property
    def local_param(self) -> Param | None:
        return next((p for p in self.params if p.kind == "local"), None)

    @property
    def launch_params(self) -> tuple[Param, ...]:
        """The parameters a launch passes, in order (the dynamic local buffer is sized, not passed)."""
        return tuple(p for p in self.params if p.kind != "local")


@dataclass
class KernelSource:
    """A portable kernel source: ``KernelSource(text)`` parses it; bad text raises KernelSourceError."""

    text: str
    origin: str = "<kernels>"
    functions: dict[str, Function] = field(init=False)
    _closure: dict[str, frozenset[str]] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self):
        _check_directives(self.text, self.origin)
        self.functions = _functions(self.text, self.origin)
        if not self.kernels:
            raise KernelSourceError(f"{self.origin}: no __kernel function in the source")

    @property
    def kernels(self) -> dict[str, Function]:
        return {name: f for name, f in self.functions.items() if f.is_kernel}

    def kernel(self, name: str) -> Function:
        found = self.kernels.get(name)
        if found is None:
            raise KernelSourceError(f"{self.origin}: no kernel '{name}' (kernels: {', '.join(self.kernels)})")
        return found

    def reaches(self, function: str, names: frozenset[str]) -> bool:
        """Whether `function`, or a helper it calls, names one of `names`."""
        return bool(self._reached(function) & names)

    def synchronises(self, function: str) -> bool:
        return self.reaches(function, SYNCS)

    def shuffles(self, function: str) -> bool:
        return self.reaches(function, SHUFFLES)

    def _reached(self, function: str, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        cached = self._closure.get(function)
        if cached is not None:
            return cached
        f = self.functions[function]
        names = set(f.uses)
        for callee in f.calls - seen - {function}:
            names |= self._reached(callee, seen | {function})
        self._closure[function] = frozenset(names)
        return self._closure[function]


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _matching(toks: list[Token], i: int, origin: str, text: str) -> int:
    """The index of the bracket closing toks[i]."""
    pairs = {"(": ")", "{": "}", "[": "]"}
    opening, closing, depth = toks[i].text, pairs[toks[i].text], 0
    for j in range(i, len(toks)):
        if toks[j].text == opening:
            depth += 1
        elif toks[j].text == closing:
            depth -= 1
            if depth == 0:
                return j
    raise KernelSourceError(f"{origin}:{_line(text, toks[i].start)}: '{opening}' is never closed")


DEFINE = re.compile(r"#\s*define\s+(\w+)(.*)", re.DOTALL)


def _macro_reach(text: str) -> dict[str, frozenset[str]]:
    """The synchronising builtins each ``#define`` of `text` expands to, directly or through other macros."""
    bodies = {}
    for match in TOKEN.finditer(text):
        if match.lastgroup == "directive":
            define = DEFINE.match(match.group())
            if define:
                bodies[define.group(1)] = {t.text for t in tokens(define.group(2).replace("\\\n", " "))}
    reach = {name: frozenset(body & SYNCS) for name, body in bodies.items()}
    changed = True
    while changed:
        changed = False
        for name, body in bodies.items():
            more = reach[name].union(*(reach[other] for other in body & reach.keys()))
            if more != reach[name]:
                reach[name], changed = frozenset(more), True
    return {name: names for name, names in reach.items() if names}


# A source is self-contained: it names no file, so compiling it reads nothing but its own text.
DIRECTIVES = frozenset({"define", "undef", "if", "ifdef", "ifndef", "elif", "else", "endif", "pragma"})


def _check_directives(text: str, origin: str) -> None:
    for match in TOKEN.finditer(text):
        if match.lastgroup == "directive":
            word = re.match(r"#\s*(\w*)", match.group()).group(1)
            if word not in DIRECTIVES:
                raise KernelSourceError(
                    f"{origin}:{_line(text, match.start())}: #{word} is not part of the form "
                    "(a kernel source is self-contained: #define, #undef, #if..., #pragma)"
                )


def _functions(text: str, origin: str) -> dict[str, Function]:
    toks = tokens(text)
    macros = _macro_reach(text)
    found: dict[str, Function] = {}
    i = 0
    while i < len(toks):
        if toks[i].text in ("__kernel", "H_DEVICE"):
            function, i = _function(toks, i, text, origin, macros)
            if function.name in found:
                raise KernelSourceError(f"{origin}:{function.line}: '{function.name}' is defined twice")
            found[function.name] = function
        else:
            i += 1
    helpers = set(found)
    return {name: replace(f, calls=f.calls & helpers) for name, f in found.items()}


def _function(
    toks: list[Token], i: int, text: str, origin: str, macros: dict[str, frozenset[str]]
) -> tuple[Function, int]:
    is_kernel = toks[i].text == "__kernel"
    line = _line(text, toks[i].start)
    open_paren = next((j for j in range(i, min(i + 16, len(toks))) if toks[j].text == "("), None)
    if open_paren is None or toks[open_paren - 1].kind != "name":
        raise KernelSourceError(f"{origin}:{line}: expected a function after {toks[i].text}")
    name = toks[open_paren - 1].text
    close_paren = _matching(toks, open_paren, origin, text)
    if close_paren + 1 >= len(toks) or toks[close_paren + 1].text != "{":
        raise KernelSourceError(f"{origin}:{line}: '{name}' has no body (declarations are not part of the form)")
    close_body = _matching(toks, close_paren + 1, origin, text)
    params = _params(toks[open_paren + 1 : close_paren], name, line, origin, is_kernel)
    body = toks[close_paren + 2 : close_body]
    calls = frozenset(t.text for k, t in enumerate(body[:-1]) if t.kind == "name" and body[k + 1].text == "(")
    uses = frozenset(t.text for t in body if t.text in SYNCS).union(*(macros.get(t.text, ()) for t in body))
    function = Function(
        name=name,
        is_kernel=is_kernel,
        start=toks[i].start,
        params_span=(toks[open_paren].end, toks[close_paren].start),
        body_span=(toks[close_paren + 1].start, toks[close_body].end),
        params=params,
        line=line,
        calls=calls,
        uses=uses,
    )
    return function, close_body + 1


def _params(toks: list[Token], function: str, line: int, origin: str, is_kernel: bool) -> tuple[Param, ...]:
    groups: list[list[Token]] = [[]]
    depth = 0
    for t in toks:
        depth += t.text in "([" and t.kind == "punct"
        depth -= t.text in ")]" and t.kind == "punct"
        if t.text == "," and depth == 0:
            groups.append([])
        else:
            groups[-1].append(t)
    if groups == [[]] or [t.text for t in groups[0]] == ["void"]:
        return ()
    params = [_param(g, function, line, origin, is_kernel) for g in groups]
    if is_kernel:
        locals_ = [p for p in params if p.kind == "local"]
        if len(locals_) > 1 or (locals_ and params[-1].kind != "local"):
            raise KernelSourceError(
                f"{origin}:{line}: kernel '{function}' may have one __local pointer parameter, and only last"
            )
    return tuple(params)


def _param(group: list[Token], function: str, line: int, origin: str, is_kernel: bool) -> Param:
    words = [t.text for t in group]
    where = f"{origin}:{line}: parameter '{' '.join(words)}' of '{function}'"
    if not words or group[-1].kind != "name":
        raise KernelSourceError(f"{where} has no name")
    name, type_words = words[-1], words[:-1]
    pointer = "*" in type_words
    space = next((w for w in type_words if w in ("__global", "__local", "__constant")), None)
    base = " ".join(w for w in type_words if w not in ("__global", "__local", "__constant", "const", "*", "restrict"))
    if base not in SCALAR_TYPES and base not in VECTOR_TYPES:
        raise KernelSourceError(f"{where}: type '{base}' is not one the form knows")
    if not is_kernel:
        return Param(name, "buffer" if pointer else "scalar", base, "const" in type_words)
    if pointer and space == "__local":
        return Param(name, "local", base)
    if pointer and space == "__global":
        return Param(name, "buffer", base, "const" in type_words)
    if pointer:
        raise KernelSourceError(f"{where}: a kernel's pointer parameter must be __global or __local")
    if base in VECTOR_TYPES:
        raise KernelSourceError(f"{where}: a vector passed by value is not supported; pass a buffer")
    return Param(name, "scalar", base)
