"""A .cu file into hamr kernel C: which functions are kernels, their instantiations, what is emitted and in what order."""

from __future__ import annotations

import hashlib
import json
import re
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path

from hamr.errors import KernelSourceError
from hamr.frontends.cuda.model import Func, Instance, Refusal
from hamr.frontends.cuda.parse import Parsed, cindex, parse
from hamr.frontends.cuda.report import CONVERTED, REFUSED, SKIPPED, Construct, Rate, Report
from hamr.frontends.cuda.rewriter import Rewriter
from hamr.frontends.cuda.token_rules import TokenRules
from hamr.frontends.cuda.tokens import Edits, matching, sanitize, split_args

FORMAT, VERSION = "hamr-kernels", 1
HOST_DETAIL = "not a kernel; launch from Python with hamr.kernels"


@dataclass
class Conversion:
    source: str
    kernels: list[str]
    report: Report
    file: str
    sha256: str
    kernel_sources: dict[str, str] = field(default_factory=dict)  # kernel -> the CUDA kernel it came from

    @property
    def constructs(self) -> list[Construct]:
        return self.report.constructs

    @property
    def refused(self) -> list[Construct]:
        return self.report.refused

    @property
    def rate(self) -> Rate:
        return self.report.rate

    def to_json(self) -> str:
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "source": self.source,
            "kernels": self.kernels,
            "origin": {"file": self.file, "sha256": self.sha256},
            "report": self.report.to_dict(),
        }
        return json.dumps(doc, indent=1) + "\n"


def convert_file(path: str | Path) -> Conversion:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KernelSourceError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KernelSourceError(f"{path}: not a CUDA source file (not UTF-8 text)") from None
    return convert(text, str(path))


def convert(text: str, filename: str = "kernel.cu") -> Conversion:
    if "\0" in text:
        raise KernelSourceError(f"{filename}: not a CUDA source file (binary data)")
    parsed = parse(text, filename)
    return _Converter(parsed, text).run()


def read_hk(path: str | Path) -> tuple[str, list[str]]:
    """The portable source and kernel names of a .hk file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KernelSourceError(f"{path}: cannot read ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KernelSourceError(f"{path}: not a .hk file (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise KernelSourceError(f"{path}: not a .hk file (format is not {FORMAT!r})")
    if doc.get("version") != VERSION:
        raise KernelSourceError(
            f"{path}: .hk version {doc.get('version')!r} is not supported (this hamr reads {VERSION})"
        )
    source, kernels = doc.get("source"), doc.get("kernels")
    if not isinstance(source, str) or not isinstance(kernels, list) or not all(isinstance(k, str) for k in kernels):
        raise KernelSourceError(f"{path}: corrupt .hk file (source or kernels missing)")
    return source, kernels


class _Converter:
    def __init__(self, parsed: Parsed, original: str):
        self.p = parsed
        self.original = original
        self.ci = cindex()
        self.report = Report()
        self.file = parsed.filename
        self.funcs: dict[str, Func] = {}
        self.all_funcs: list[Func] = []
        self.defines: dict[str, str] = {}
        self.items: list[tuple[int, str]] = []  # (token index, text) of #defines and constants, in source order
        self.broken: dict[str, tuple[int, str]] = {}  # function -> clang's first error in it

    def add(self, line: int, construct: str, status: str, detail: str = "") -> None:
        self.report.add(self.file, line, construct, status, detail)

    def run(self) -> Conversion:
        for line, directive in self.p.includes:
            self.add(line, directive, SKIPPED, "includes are not followed; hamr's shim declares CUDA's builtins")
        self.collect(self.p.tu.cursor)
        self.diagnostics()
        self.directives()
        rw = Rewriter(self.p, self.funcs, self.defines)
        emitted: list[Instance] = []
        kernel_ok: dict[str, list[bool]] = {}
        names: list[str] = []
        for f in self.all_funcs:
            if f.kind != "kernel":
                continue
            insts = self.instantiations(f)
            oks = kernel_ok.setdefault(f.name, [])
            if not insts:
                self.add(
                    self.p.tokens[f.name_tok].line,
                    f"template kernel {f.name}",
                    REFUSED,
                    "never instantiated: add `template __global__ void k<...>(...);` or launch it from host code",
                )
                oks.append(False)
            for subst, iname in insts:
                line = self.p.tokens[f.name_tok].line
                try:
                    inst = rw.instance(f, subst, iname)
                    bad = [h for h in self.closure(inst) if h.func.name in self.broken]
                    if bad:
                        bl, msg = self.broken[bad[0].func.name]
                        raise Refusal(bl, f"function {bad[0].func.name}", f"clang cannot check it: {msg}")
                except Refusal as r:
                    self.add(r.line, r.construct, REFUSED, f"{r.detail}; kernel {iname} not converted")
                    oks.append(False)
                    continue
                except Exception:  # noqa: BLE001 - libclang's AST of code it could not check
                    if f.name not in self.broken:
                        raise
                    bl, msg = self.broken[f.name]
                    self.add(bl, f"kernel {f.name}", REFUSED, f"clang cannot check it: {msg}")
                    oks.append(False)
                    continue
                oks.append(True)
                names.append(iname)
                for h in self.closure(inst):
                    if h not in emitted:
                        emitted.append(h)
                self.add(line, f"kernel {iname}", CONVERTED, f"from __global__ {f.name}")
        for inst in emitted:
            for line, construct, detail in inst.constructs:
                self.add(line, construct, CONVERTED, detail)
        self.rates(emitted, kernel_ok)
        source = self.assemble(emitted, names)
        sha = hashlib.sha256(self.original.encode("utf-8")).hexdigest()
        return Conversion(source, names, self.report, Path(self.file).name, sha)

    # ---- the file's functions
    def collect(self, cursor) -> None:
        K = self.ci.CursorKind
        for c in cursor.get_children():
            if c.location.file is None or c.location.file.name != self.p.filename:
                continue
            if c.kind in (K.LINKAGE_SPEC, K.NAMESPACE):
                self.collect(c)
            elif c.kind in (K.FUNCTION_DECL, K.FUNCTION_TEMPLATE) and c.is_definition():
                self.function(c)
            elif c.kind == K.VAR_DECL:
                self.global_var(c)
            elif c.kind in (K.STRUCT_DECL, K.CLASS_DECL, K.CLASS_TEMPLATE, K.UNION_DECL) and c.is_definition():
                self.add(
                    c.location.line,
                    f"{c.kind.name.split('_')[0].lower()} {c.spelling}",
                    SKIPPED,
                    "no classes in the portable form",
                )
            elif c.kind in (K.USING_DIRECTIVE, K.USING_DECLARATION, K.TYPEDEF_DECL, K.TYPE_ALIAS_DECL):
                self.add(
                    c.location.line, f"{c.kind.name.lower().replace('_', ' ')} {c.spelling}", SKIPPED, "not kernel code"
                )

    def function(self, c) -> None:
        K = self.ci.CursorKind
        attrs = {a.kind for a in c.get_children()}
        kind = "kernel" if K.CUDAGLOBAL_ATTR in attrs else "device" if K.CUDADEVICE_ATTR in attrs else "host"
        toks = self.p.tokens
        starts = [t.start for t in toks]
        start = bisect_left(starts, c.extent.start.offset)
        end = bisect_left(starts, c.extent.end.offset)
        name_tok = bisect_left(starts, c.location.offset)
        if kind == "host":
            self.add(c.location.line, f"host function {c.spelling}", SKIPPED, HOST_DETAIL)
            self.all_funcs.append(Func(c, c.spelling, kind, [], start, name_tok, name_tok, name_tok, name_tok, end))
            return
        try:
            lparen = name_tok + 1
            while toks[lparen].text != "(":
                lparen += 1
            rparen = matching(toks, lparen, "(", ")")
            body = rparen
            while toks[body].text != "{":
                body += 1
        except (Refusal, IndexError):
            self.add(c.location.line, f"function {c.spelling}", REFUSED, "cannot find its parameters and body")
            return
        tparams = [
            p.spelling
            for p in c.get_children()
            if p.kind in (K.TEMPLATE_TYPE_PARAMETER, K.TEMPLATE_NON_TYPE_PARAMETER, K.TEMPLATE_TEMPLATE_PARAMETER)
        ]
        f = Func(c, c.spelling, kind, tparams, start, name_tok, lparen, rparen, body, end)
        if c.spelling in self.funcs:
            self.add(c.location.line, f"overloaded function {c.spelling}", REFUSED, "overloads: give each its own name")
            return
        self.funcs[c.spelling] = f
        self.all_funcs.append(f)

    def global_var(self, c) -> None:
        K = self.ci.CursorKind
        attrs = {a.kind for a in c.get_children()}
        line = c.location.line
        if K.CUDACONSTANT_ATTR in attrs or K.CUDADEVICE_ATTR in attrs or K.CUDASHARED_ATTR in attrs:
            what = "__constant__" if K.CUDACONSTANT_ATTR in attrs else "__device__"
            self.add(
                line, f"{what} variable {c.spelling}", REFUSED, "not in the portable form: pass it as a buffer argument"
            )
            return
        canon = c.type.get_canonical()
        TK = self.ci.TypeKind
        scalar = canon.kind in (TK.INT, TK.UINT, TK.LONG, TK.ULONG, TK.FLOAT, TK.DOUBLE, TK.SHORT, TK.USHORT, TK.BOOL)
        toks = self.p.tokens
        starts = [t.start for t in toks]
        i, j = bisect_left(starts, c.extent.start.offset), bisect_left(starts, c.extent.end.offset)
        eq = next((k for k in range(i, j) if toks[k].text == "="), None)
        if scalar and c.type.is_const_qualified() and eq is not None:
            rw = Rewriter(self.p, self.funcs, self.defines)
            e = Edits()
            TokenRules(rw, e, lambda *a: None, {}).apply(eq + 1, j)
            value = rw.render(eq + 1, j, e).strip()
            self.defines[c.spelling] = value
            self.items.append((i, f"#define {c.spelling} ({value})"))
            self.add(line, f"constant {c.spelling}", CONVERTED, f"#define {c.spelling} ({value})")
        else:
            self.add(line, f"global variable {c.spelling}", SKIPPED, "host data; not kernel code")

    def diagnostics(self) -> None:
        device = [f for f in self.all_funcs if f.kind != "host"]
        for line, msg in self.p.errors:
            owner = next(
                (f for f in self.all_funcs if self.p.tokens[f.start].line <= line <= self.p.tokens[f.end - 1].line),
                None,
            )
            if owner is not None and owner.kind != "host":
                self.broken.setdefault(owner.name, (line, msg))
            elif owner is not None:
                self.add(line, f"host function {owner.name}", SKIPPED, f"clang: {msg}")
            elif not device:
                where = f"{self.file}:{line}" if line else self.file
                raise KernelSourceError(f"{where}: cannot parse as CUDA: {msg}")
            else:
                self.add(line, "top-level code", SKIPPED, f"clang: {msg}")

    # ---- #define and other directives outside functions
    def directives(self) -> None:
        toks, text = self.p.tokens, self.p.text
        inside = [(f.start, f.end) for f in self.all_funcs]
        rw = Rewriter(self.p, self.funcs, self.defines)
        k = 0
        while k < len(toks):
            t = toks[k]
            first_on_line = k == 0 or toks[k - 1].line != t.line
            if t.text != "#" or not first_on_line or any(a <= k < b for a, b in inside):
                k += 1
                continue
            m = re.compile(r"(?:\\\n|[^\n])*").match(text, t.start)
            stop = m.end()
            j = k + 1
            while j < len(toks) and toks[j].start < stop:
                j += 1
            word = toks[k + 1].text if k + 1 < j else ""
            if word in ("define", "undef"):
                name = toks[k + 2].text if k + 2 < j else ""
                e = Edits()
                try:
                    TokenRules(rw, e, lambda *a: None, {}).apply(k + 2, j)
                except Refusal as r:
                    self.add(t.line, f"#define {name}", SKIPPED, f"host macro ({r.detail})")
                    k = j
                    continue
                self.items.append((k, rw.render(k, j, e)))
                if word == "define" and k + 3 < j and toks[k + 3].start == toks[k + 2].end and toks[k + 3].text == "(":
                    pass
                elif word == "define":
                    self.defines[name] = rw.text(k + 3, j)
            elif word not in ("pragma", "include"):
                self.add(t.line, f"#{word}", SKIPPED, "conditional compilation is not carried over")
            k = j
        self.explicit = self.explicit_instantiations()

    # ---- templates
    def explicit_instantiations(self) -> dict[str, list[list[str]]]:
        toks = self.p.tokens
        inside = [(f.start, f.end) for f in self.all_funcs]
        out: dict[str, list[list[str]]] = {}
        for k, t in enumerate(toks):
            if t.text != "template" or k + 1 >= len(toks) or toks[k + 1].text == "<":
                continue
            if any(a <= k < b for a, b in inside):
                continue
            j = k + 1
            while (
                j < len(toks) and toks[j].text != ";" and not (toks[j].text in self.funcs and toks[j + 1].text == "<")
            ):
                j += 1
            if j >= len(toks) or toks[j].text == ";":
                continue
            close = matching(toks, j + 1, "<", ">")
            args = [
                " ".join(toks[a].text for a in range(x, y)).replace("unsigned int", "uint")
                for x, y in split_args(toks, j + 1, close)
            ]
            out.setdefault(toks[j].text, []).append(args)
            self.add(
                t.line,
                f"explicit instantiation {toks[j].text}<{', '.join(args)}>",
                CONVERTED,
                f"kernel {toks[j].text}_{sanitize(args)}",
            )
        return out

    def instantiations(self, f: Func) -> list[tuple[dict[str, str], str]]:
        if not f.tparams:
            return [({}, f.name)]
        found = [a for a in self.explicit.get(f.name, [])]
        found += self.launched(f)
        out, seen = [], set()
        for args in found:
            args = [" ".join(a.replace("unsigned int", "uint").split()) for a in args]
            if len(args) != len(f.tparams) or tuple(args) in seen:
                if len(args) != len(f.tparams):
                    self.add(
                        self.p.tokens[f.name_tok].line,
                        f"template kernel {f.name}",
                        REFUSED,
                        "default template arguments: give every argument",
                    )
                continue
            seen.add(tuple(args))
            out.append((dict(zip(f.tparams, args)), f"{f.name}_{sanitize(args)}"))
        return out

    def launched(self, f: Func) -> list[list[str]]:
        K, TAK = self.ci.CursorKind, self.ci.TemplateArgumentKind
        out = []
        for h in self.all_funcs:
            if h.kind != "host":
                continue
            for n in h.cursor.walk_preorder():
                if n.kind != K.DECL_REF_EXPR or n.spelling != f.name:
                    continue
                r = n.referenced
                count = r.get_num_template_arguments() if r is not None else -1
                if count <= 0:
                    continue
                args = []
                for i in range(count):
                    kind = r.get_template_argument_kind(i)
                    if kind == TAK.TYPE:
                        args.append(r.get_template_argument_type(i).spelling)
                    elif kind == TAK.INTEGRAL:
                        args.append(str(r.get_template_argument_value(i)))
                args = [a.replace("unsigned int", "uint") for a in args]
                if len(args) == count and args not in out:
                    out.append(args)
                    self.add(
                        n.location.line,
                        f"launch of {f.name}<{', '.join(args)}>",
                        CONVERTED,
                        f"kernel {f.name}_{sanitize(args)}",
                    )
        return out

    # ---- output
    def closure(self, inst: Instance) -> list[Instance]:
        out: list[Instance] = []

        def visit(i: Instance) -> None:
            for h in i.helpers:
                visit(h)
            if i not in out:
                out.append(i)

        visit(inst)
        return out

    def assemble(self, emitted: list[Instance], names: list[str]) -> str:
        items = list(self.items)
        order = {id(inst): n for n, inst in enumerate(emitted)}
        for inst in sorted(emitted, key=lambda i: (i.func.start, order[id(i)])):
            items.append((inst.func.start, inst.text))
        items.sort(key=lambda x: x[0])
        head = f"/* hamr kernel C, converted from {Path(self.file).name} by `hamr convert`: {', '.join(names) or 'no kernels'} */"
        return "\n\n".join([head, *(text for _, text in items)]) + "\n"

    def rates(self, emitted: list[Instance], kernel_ok: dict[str, list[bool]]) -> None:
        rate = self.report.rate
        done = {i.func.name for i in emitted}
        used = set()
        for f in self.all_funcs:
            if f.kind == "kernel":
                used |= self.reachable(f)
        for f in self.all_funcs:
            if f.kind == "host" or (f.kind == "device" and f.name not in used):
                if f.kind == "device":
                    self.add(self.p.tokens[f.name_tok].line, f"device function {f.name}", SKIPPED, "no kernel calls it")
                continue
            lines = self.count_lines(f)
            rate.kernel_lines += lines
            ok = all(kernel_ok.get(f.name, [False])) if f.kind == "kernel" else f.name in done
            if f.kind == "kernel":
                rate.kernels += 1
                rate.kernels_converted += ok
            if ok:
                rate.lines_converted += lines

    def reachable(self, f: Func) -> set[str]:
        seen, todo = set(), [f]
        while todo:
            g = todo.pop()
            for t in self.p.tokens[g.body : g.end]:
                h = self.funcs.get(t.text)
                if h is not None and h.kind == "device" and h.name not in seen:
                    seen.add(h.name)
                    todo.append(h)
        return seen

    def count_lines(self, f: Func) -> int:
        toks = self.p.tokens
        return len({t.line for t in toks[f.start : f.end] if not t.text.startswith(("//", "/*"))})
