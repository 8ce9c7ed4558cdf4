"""The token rewriter: one CUDA function (a kernel, or a helper instance) into hamr kernel C, guided by its AST."""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field

from hamr.frontends.cuda import tables as tb
from hamr.frontends.cuda.parse import Parsed, cindex

GLOBAL, LOCAL = "__global", "__local"
FULL_MASKS = {"0xffffffff", "0xffffffffu", "0xffffffffU", "-1", "~0", "~0u", "0xFFFFFFFF", "0xFFFFFFFFu", "0xFFFFFFFFU"}


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
class Edits:
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
    func: Func
    subst: dict[str, str]
    name: str
    spaces: tuple = ()
    text: str = ""
    hidden: list[Hidden] = field(default_factory=list)
    helpers: list[Instance] = field(default_factory=list)
    constructs: list[tuple[int, str, str]] = field(default_factory=list)  # (line, construct, detail)


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


def split_args(tokens, lparen: int, rparen: int) -> list[tuple[int, int]]:
    """Token ranges of a call's arguments (top-level commas)."""
    out, depth, start = [], 0, lparen + 1
    for k in range(lparen + 1, rparen):
        t = tokens[k].text
        if t in "([{":
            depth += 1
        elif t in ")]}":
            depth -= 1
        elif t == "," and depth == 0:
            out.append((start, k))
            start = k + 1
    if start < rparen:
        out.append((start, rparen))
    return out


class Rewriter:
    """Rewrites the function instances of one parsed file; instances are memoized by key."""

    def __init__(self, parsed: Parsed, funcs: dict[str, Func], defines: dict[str, str]):
        self.p = parsed
        self.t = parsed.tokens
        self.starts = [t.start for t in self.t]
        self.funcs = funcs
        self.defines = defines
        self.ci = cindex()
        self.instances: dict[tuple, Instance] = {}
        self.names: dict[tuple, str] = {}
        self.stack: list[str] = []
        self.shfl_funcs = self._shuffle_users()

    # ---- helpers over tokens and cursors
    def idx(self, offset: int) -> int:
        return bisect_left(self.starts, offset)

    def end_idx(self, cursor) -> int:
        """One past the cursor's last token."""
        return bisect_left(self.starts, cursor.extent.end.offset)

    def text(self, i: int, j: int) -> str:
        return self.p.text[self.t[i].start : self.t[j - 1].end] if j > i else ""

    def render(self, i: int, j: int, e: Edits) -> str:
        out: list[str] = []
        last = ""
        for k in range(i, j):
            gone = e.repl.get(k) == "" and not e.pre.get(k)
            if k > i and not gone and not (e.repl.get(k - 1) == "" and last.endswith("(")):
                out.append(self.p.text[self.t[k - 1].end : self.t[k].start])
            for piece in (e.pre.get(k, ""), e.repl.get(k, self.t[k].text), e.post.get(k, "")):
                out.append(piece)
                last = piece or last
        return "".join(out)

    def in_file(self, c) -> bool:
        f = c.location.file
        return f is not None and f.name == self.p.filename

    def _shuffle_users(self) -> set[str]:
        names = set(tb.SHUFFLES) | set(tb.LEGACY_SHUFFLES)
        users = set()
        changed = True
        while changed:
            changed = False
            for f in self.funcs.values():
                if f.name not in users and any(t.text in names or t.text in users for t in self.t[f.body : f.end]):
                    users.add(f.name)
                    changed = True
        return users

    # ---- instances
    def instance(self, func: Func, subst: dict[str, str], name: str, spaces: tuple = ()) -> Instance:
        key = (func.name, tuple(sorted(subst.items())), spaces)
        if key in self.instances:
            return self.instances[key]
        if func.name in self.stack:
            raise Refusal(self.t[func.name_tok].line, f"call to {func.name}", "recursion")
        self.stack.append(func.name)
        try:
            inst = Instance(func, subst, name, spaces)
            FunctionRewriter(self, inst).run()
        finally:
            self.stack.pop()
        self.instances[key] = inst
        return inst

    def helper_name(self, func: Func, targs: list[str], spaces: tuple) -> str:
        base = func.name + (f"_{sanitize(targs)}" if targs else "")
        key = (func.name, tuple(targs))
        first = self.names.setdefault(key, spaces)
        if first == spaces:
            return base
        return base + "_" + "".join("l" if s == LOCAL else "g" for s in spaces if s)


class FunctionRewriter:
    def __init__(self, rw: Rewriter, inst: Instance):
        self.rw, self.inst, self.f = rw, inst, inst.func
        self.t = rw.t
        self.K = rw.ci.CursorKind
        self.TK = rw.ci.TypeKind
        self.e = Edits()
        self.env: dict[str, str] = {}
        self.tainted: set[str] = set()
        self.kernel = self.f.kind == "kernel"
        self.extra_params: list[str] = []
        self.hoisted: list[str] = []
        self.deferred = []  # if-conversions, rendered once every other edit is in

    def note(self, line: int, construct: str, detail: str = "") -> None:
        self.inst.constructs.append((line, construct, detail))

    def refuse(self, line: int, construct: str, detail: str):
        raise Refusal(line, construct, detail)

    def sub(self, type_spelling: str) -> str:
        s = type_spelling.replace("__restrict", "").replace("restrict", "")
        for k, v in self.inst.subst.items():
            s = re.sub(rf"\b{re.escape(k)}\b", v, s)
        s = re.sub(r"\bstruct\s+", "", s)
        s = re.sub(r"\blong long\b", "long", s)
        for k, v in tb.TYPES.items():
            s = re.sub(rf"\b{k}\b", v, s)
        return " ".join(s.split())

    def pointerish(self, ty) -> bool:
        k = ty.kind
        if k in (self.TK.POINTER, self.TK.INCOMPLETEARRAY, self.TK.CONSTANTARRAY, self.TK.DEPENDENTSIZEDARRAY):
            return True
        return k in (self.TK.DEPENDENT, self.TK.UNEXPOSED) and "*" in ty.spelling

    def children(self, c) -> list:
        return list(c.get_children())

    # ---- address spaces
    def space(self, c) -> str | None:
        k = c.kind
        if k == self.K.DECL_REF_EXPR:
            return self.env.get(c.spelling)
        kids = self.children(c)
        if k == self.K.ARRAY_SUBSCRIPT_EXPR:
            return self.space(kids[0]) if kids else None
        if k == self.K.MEMBER_REF_EXPR:
            return None
        for ch in kids:
            if k == self.K.UNARY_OPERATOR or self.pointerish(ch.type) or ch.type.kind == self.TK.DEPENDENT:
                s = self.space(ch)
                if s:
                    return s
        return None

    # ---- the pass
    def run(self) -> None:
        f = self.f
        for p in f.cursor.get_children():
            if p.kind != self.K.PARM_DECL:
                continue
            if p.type.kind in (self.TK.LVALUEREFERENCE, self.TK.RVALUEREFERENCE):
                self.refuse(p.location.line, f"reference parameter {p.spelling}", "the portable form has no references")
            if self.pointerish(p.type):
                if "**" in p.type.spelling.replace(" ", ""):
                    self.refuse(p.location.line, f"parameter {p.spelling}", "pointers to pointers")
                sp = GLOBAL if self.kernel else dict(self.inst.spaces).get(p.spelling)
                if sp is None:
                    self.refuse(p.location.line, f"parameter {p.spelling}", "cannot tell its address space")
                self.env[p.spelling] = sp
                self.e.before(self.rw.idx(p.extent.start.offset), sp + " ")
            elif p.type.get_canonical().kind == self.TK.RECORD and self.sub(p.type.spelling) not in tb.VECTOR_TYPES:
                self.refuse(p.location.line, f"parameter {p.spelling}", f"struct type {p.type.spelling}")
        self.walk(f.cursor, None)
        self.tokens()
        for fn in self.deferred:
            fn()
        self.assemble()

    def walk(self, c, parent) -> None:
        for ch in c.get_children():
            if ch.kind == self.K.PARM_DECL and c is self.f.cursor:
                continue
            self.visit(ch, c)
            self.walk(ch, ch)

    def visit(self, c, parent) -> None:
        K = self.K
        k = c.kind
        line = c.extent.start.line
        if k == K.VAR_DECL:
            self.var_decl(c, parent)
        elif k == K.CALL_EXPR:
            self.call(c)
        elif k in (K.CXX_REINTERPRET_CAST_EXPR, K.CXX_STATIC_CAST_EXPR, K.CXX_CONST_CAST_EXPR):
            self.named_cast(c)
        elif k == K.CSTYLE_CAST_EXPR:
            self.c_cast(c)
        elif k == K.CXX_FUNCTIONAL_CAST_EXPR:
            self.functional_cast(c)
        elif k == K.IF_STMT:
            self.if_stmt(c)
        elif k == K.DECL_REF_EXPR:
            r = c.referenced
            if r is not None and r.kind == K.VAR_DECL and r.semantic_parent is not None:
                local = self.f.cursor.extent.start.offset <= r.extent.start.offset < self.f.cursor.extent.end.offset
                if r.semantic_parent.kind in (K.TRANSLATION_UNIT, K.NAMESPACE) and self.rw.in_file(r) and not local:
                    if r.spelling not in self.rw.defines:
                        self.refuse(
                            line,
                            f"global variable {r.spelling}",
                            "__constant__/__device__ globals are not in the portable form: pass it as a buffer argument",
                        )
        elif k in (K.LAMBDA_EXPR,):
            self.refuse(line, "lambda", "lambdas in device code")
        elif k in (K.CXX_NEW_EXPR, K.CXX_DELETE_EXPR):
            self.refuse(line, "new/delete", "dynamic allocation in device code")
        elif k in (K.ASM_STMT, getattr(K, "GCC_ASM_STMT", K.ASM_STMT), getattr(K, "MS_ASM_STMT", K.ASM_STMT)):
            self.refuse(line, "asm", "inline PTX asm")
        elif k == K.CXX_THIS_EXPR:
            self.refuse(line, "this", "C++ classes in device code")
        elif k == K.MEMBER_REF_EXPR:
            r = c.referenced
            if r is not None and r.kind in (K.CXX_METHOD, K.CONVERSION_FUNCTION):
                self.refuse(line, f"method {c.spelling}", "C++ classes in device code")

    # ---- declarations
    def var_decl(self, c, parent) -> None:
        K = self.K
        line = c.location.line
        ty = c.type
        kids = self.children(c)
        shared = any(a.kind == K.CUDASHARED_ATTR for a in kids)
        if ty.kind in (self.TK.LVALUEREFERENCE, self.TK.RVALUEREFERENCE):
            self.refuse(line, f"reference {c.spelling}", "the portable form has no references")
        if shared:
            self.shared(c, parent)
            return
        if any(a.kind == K.CUDACONSTANT_ATTR for a in kids) or c.storage_class == self.rw.ci.StorageClass.STATIC:
            self.refuse(line, f"static variable {c.spelling}", "static/__constant__ variables in device code")
        first = self.rw.idx(c.extent.start.offset)
        if self.t[first].text == "auto" or (self.t[first].text == "const" and self.t[first + 1].text == "auto"):
            a = first if self.t[first].text == "auto" else first + 1
            self.e.replace(a, self.sub(ty.spelling.replace("const ", "")))
        expr = [ch for ch in kids if ch.kind not in (K.TYPE_REF, K.TEMPLATE_REF, K.NAMESPACE_REF)]
        if expr and self.taints(expr[-1]):
            self.tainted.add(c.spelling)
        canon = ty.get_canonical()
        if canon.kind == self.TK.RECORD and self.sub(ty.spelling).replace("const ", "") not in tb.VECTOR_TYPES:
            self.refuse(line, f"variable {c.spelling}", f"struct/class type {ty.spelling} in device code")
        if ty.kind == self.TK.POINTER or (ty.kind in (self.TK.DEPENDENT, self.TK.UNEXPOSED) and "*" in ty.spelling):
            if "**" in ty.spelling.replace(" ", ""):
                self.refuse(line, f"variable {c.spelling}", "pointers to pointers")
            sp = self.space(expr[-1]) if expr else self.assigned_space(c)
            if sp is None:
                self.refuse(line, f"pointer {c.spelling}", "cannot tell whether it points to global or shared memory")
            self.env[c.spelling] = sp
            if first not in self.e.pre:
                self.e.before(first, sp + " ")
            elif self.e.pre[first] != sp + " ":
                self.refuse(line, f"pointer {c.spelling}", "declared with pointers to global and shared memory at once")

    def assigned_space(self, var) -> str | None:
        for n in self.f.cursor.walk_preorder():
            if n.kind == self.K.BINARY_OPERATOR:
                kids = self.children(n)
                if len(kids) == 2 and kids[0].kind == self.K.DECL_REF_EXPR and kids[0].spelling == var.spelling:
                    i = self.rw.idx(kids[0].extent.end.offset)
                    if self.t[i].text == "=":
                        return self.space(kids[1])
        return None

    def stmt_range(self, c, parent) -> tuple[int, int]:
        if parent is None or parent.kind != self.K.DECL_STMT:
            self.refuse(c.location.line, f"__shared__ {c.spelling}", "not a declaration statement")
        if len([v for v in parent.get_children() if v.kind == self.K.VAR_DECL]) > 1:
            self.refuse(c.location.line, f"__shared__ {c.spelling}", "declare one __shared__ array per statement")
        return self.rw.idx(parent.extent.start.offset), self.rw.end_idx(parent)

    def decl_text(self, i: int, j: int) -> tuple[str, str, str]:
        """(element type, name, dims) of `[static] [extern] __shared__ T name[A][B];`"""
        toks = [t.text for t in self.t[i:j]]
        toks = [t for t in toks if t not in ("static", "extern", "__shared__", ";", "volatile")]
        if "__align__" in toks:
            a = toks.index("__align__")
            toks = toks[:a] + toks[a + 4 :]
        if "[" in toks:
            b = toks.index("[")
            head, dims = toks[:b], toks[b:]
        else:
            head, dims = toks, []
        edits = " ".join(head[:-1])
        return self.sub(edits), head[-1], "".join(self.sub(d) if d.isidentifier() else d for d in dims)

    def shared(self, c, parent) -> None:
        line = c.location.line
        i, j = self.stmt_range(c, parent)
        elem, name, dims = self.decl_text(i, j)
        self.env[c.spelling] = LOCAL
        if c.storage_class == self.rw.ci.StorageClass.EXTERN:
            if not self.kernel:
                self.refuse(
                    line,
                    f"extern __shared__ {name}",
                    "in a __device__ function: declare it in the kernel and pass a pointer",
                )
            if self.extra_params:
                self.refuse(line, f"extern __shared__ {name}", "one extern __shared__ array per kernel")
            self.extra_params.append(f"{LOCAL} {elem} *{name}")
            self.e.delete(i, j)
            self.note(line, "extern __shared__", f"last parameter __local {elem} *{name}")
            return
        if self.kernel:
            body_level = any(
                s.kind == self.K.DECL_STMT and s.extent.start.offset == parent.extent.start.offset
                for s in self.children(self.body_cursor())
            )
            if body_level:
                self.e.delete(i, j)
                self.e.before(i, f"{LOCAL} {elem} {name}{dims};")
                self.note(line, "__shared__", f"__local {elem} {name}{dims}")
            else:
                self.e.delete(i, j)
                self.hoisted.append(f"{LOCAL} {elem} {name}{dims};")
                self.note(line, "__shared__ in a nested block", "hoisted to the kernel's top level")
            return
        if not dims:
            self.refuse(line, f"__shared__ {name}", "a scalar __shared__ variable in a helper: make it an array")
        rest = dims[dims.index("]") + 1 :]
        hname = f"hamr_{self.f.name}_{name}"
        h = Hidden(hname, f"{LOCAL} {elem} {hname}{dims};", elem, rest)
        h.param = param = h.as_param(name)
        self.inst.hidden.append(h)
        self.e.delete(i, j)
        self.note(line, "__shared__ in a __device__ function", f"declared by the kernel, passed as {param}")

    def body_cursor(self):
        for ch in self.f.cursor.get_children():
            if ch.kind == self.K.COMPOUND_STMT:
                return ch
        return self.f.cursor

    # ---- taint (values that differ between the threads of a block)
    def taints(self, c) -> bool:
        i, j = self.rw.idx(c.extent.start.offset), self.rw.end_idx(c)
        for t in self.t[i:j]:
            if t.text == "threadIdx" or t.text in self.tainted or t.text in tb.SHUFFLES or t.text in tb.LEGACY_SHUFFLES:
                return True
        return False

    # ---- calls
    def call(self, c) -> None:
        K = self.K
        line = c.extent.start.line
        name = c.spelling
        kids = self.children(c)
        if not name and kids:
            name = kids[0].spelling or (kids[0].referenced.spelling if kids[0].referenced else "")
        i = self.rw.idx(c.extent.start.offset)
        if name in tb.ATOMICS:
            self.atomic(c, name, line)
            return
        callee = self.rw.funcs.get(name)
        if callee is None or self.t[i].text != name:
            ref = c.referenced
            if ref is not None and ref.kind in (K.CXX_METHOD, K.CONSTRUCTOR) and self.rw.in_file(ref):
                self.refuse(line, f"call to {name}", "C++ classes in device code")
            return
        if callee.kind == "kernel":
            self.refuse(line, f"launch of {name}", "dynamic parallelism (a kernel launching a kernel)")
        if callee.kind == "host":
            self.refuse(line, f"call to {name}", "a host function called from device code")
        lp = i + 1
        targs: list[str] = []
        if self.t[lp].text == "<":
            close = matching(self.t, lp, "<", ">")
            targs = [self.sub(self.rw.text(a, b)) for a, b in split_args(self.t, lp, close)]
            self.e.delete(lp, close + 1)
            lp = close + 1
        if self.t[lp].text != "(":
            return
        rp = matching(self.t, lp, "(", ")")
        args = list(c.get_arguments())
        subst = self.deduce(callee, targs, args, line)
        spaces = []
        params = [p for p in callee.cursor.get_children() if p.kind == K.PARM_DECL]
        for n, p in enumerate(params):
            if self.pointerish(p.type):
                if n >= len(args):
                    self.refuse(line, f"call to {name}", "default pointer arguments")
                sp = self.space(args[n])
                if sp is None:
                    self.refuse(line, f"call to {name}", f"cannot tell the address space of argument {n + 1}")
                spaces.append((p.spelling, sp))
        targ_list = [subst[t] for t in callee.tparams]
        iname = self.rw.helper_name(callee, targ_list, tuple(spaces))
        inst = self.rw.instance(callee, subst, iname, tuple(spaces))
        self.inst.helpers.append(inst)
        self.e.replace(i, iname)
        if inst.hidden:
            names = ", ".join(h.name for h in inst.hidden)
            self.e.before(rp, (", " if rp > lp + 1 else "") + names)
            for h in inst.hidden:
                if self.kernel:
                    if h.decl not in self.hoisted:
                        self.hoisted.append(h.decl)
                elif h.name not in [x.name for x in self.inst.hidden]:
                    self.inst.hidden.append(Hidden(h.name, h.decl, h.elem, h.rest, h.as_param(h.name)))

    def deduce(self, callee: Func, targs: list[str], args, line: int) -> dict[str, str]:
        subst = dict(zip(callee.tparams, targs))
        params = [p for p in callee.cursor.get_children() if p.kind == self.K.PARM_DECL]
        for p, a in zip(params, args):
            pt = p.type.spelling.replace("const ", "").replace("__restrict", "").replace("&", "").strip()
            at = self.sub(a.type.spelling).replace("const ", "").replace("&", "").strip()
            star = pt.endswith("*")
            pt = pt.rstrip("* ")
            if pt in callee.tparams and pt not in subst:
                subst[pt] = at.rstrip("* ") if star else at
        missing = [t for t in callee.tparams if t not in subst or "dependent" in subst[t]]
        if missing:
            self.refuse(
                line, f"call to {callee.name}", f"cannot deduce template argument {missing[0]}: give it explicitly"
            )
        return subst

    def atomic(self, c, name: str, line: int) -> None:
        args = list(c.get_arguments())
        if not args:
            return
        pointee = self.sub(args[0].type.get_pointee().spelling)
        if not pointee:
            refs = [n for n in args[0].walk_preorder() if n.kind == self.K.DECL_REF_EXPR and self.pointerish(n.type)]
            pointee = self.sub(refs[0].type.spelling).rstrip("* ") if refs else "an unknown type"
        pointee = pointee.replace("const ", "").replace("volatile ", "").strip()
        pointee = {"unsigned": "unsigned int", "uint": "unsigned int"}.get(pointee, pointee)
        if pointee not in tb.ATOMIC_TYPES or (name in tb.ATOMIC_INT_ONLY and pointee == "float"):
            self.refuse(line, f"{name} on {pointee}", "the portable form's atomics are on int, uint and float")
        i = self.rw.idx(c.extent.start.offset)
        if self.t[i].text != name:
            self.refuse(line, name, "spelled through a macro")
        lp = i + 1
        rp = matching(self.t, lp, "(", ")")
        if name == "atomicInc":
            a = split_args(self.t, lp, rp)
            limit = self.rw.text(*a[1]) if len(a) == 2 else ""
            if limit.replace(" ", "") not in FULL_MASKS | {"UINT_MAX"}:
                self.refuse(line, "atomicInc", "wraps at a limit; only atomicInc(p, 0xffffffff) (add 1) converts")
            self.e.delete(a[0][1], a[1][1])
        self.e.replace(i, tb.ATOMICS[name])
        self.note(line, name, f"{tb.ATOMICS[name]} on {pointee}")

    # ---- casts
    def named_cast(self, c) -> None:
        i = self.rw.idx(c.extent.start.offset)
        if self.t[i + 1].text != "<":
            return
        close = matching(self.t, i + 1, "<", ">")
        lp = close + 1
        rp = matching(self.t, lp, "(", ")")
        self.e.replace(i, "((")
        self.e.delete(i + 1)
        self.e.replace(close, ")")
        self.e.after(rp, ")")
        if self.pointerish(c.type):
            operand = self.children(c)[-1]
            sp = self.space(operand)
            if sp is None:
                self.refuse(c.extent.start.line, self.t[i].text, "cannot tell the address space of the cast pointer")
            self.e.before(i + 2, sp + " ")
            self.note(c.extent.start.line, self.t[i].text, f"C cast to a {sp} pointer")

    def c_cast(self, c) -> None:
        if not self.pointerish(c.type):
            return
        i = self.rw.idx(c.extent.start.offset)
        operand = self.children(c)[-1]
        sp = self.space(operand)
        if sp is None:
            self.refuse(c.extent.start.line, "pointer cast", "cannot tell the address space of the cast pointer")
        self.e.before(i + 1, sp + " ")

    def functional_cast(self, c) -> None:
        i = self.rw.idx(c.extent.start.offset)
        j = self.rw.end_idx(c)
        lp = next((k for k in range(i, j) if self.t[k].text == "("), None)
        ty = self.sub(c.type.spelling)
        if lp is None or ty in tb.VECTOR_TYPES or c.type.get_canonical().kind == self.TK.RECORD:
            self.refuse(c.extent.start.line, f"{ty}(...)", "C++ constructor syntax for a struct")
        self.e.before(i, "((")
        self.e.after(lp - 1, ")")
        self.e.after(j - 1, ")")

    # ---- warp-divergent shuffles
    def if_stmt(self, c) -> None:
        kids = self.children(c)
        if len(kids) < 2:
            return
        cond, then = kids[0], kids[1:]
        if not any(self.has_shuffle(s) for s in then) or not self.taints(cond):
            return
        line = c.extent.start.line
        stmt = kids[1]
        if stmt.kind == self.K.COMPOUND_STMT:
            inner = self.children(stmt)
            stmt = inner[0] if len(inner) == 1 else None
        call = None
        if len(kids) == 2 and stmt is not None and stmt.kind == self.K.BINARY_OPERATOR:
            lhs, rhs = self.children(stmt)
            i = self.rw.idx(lhs.extent.end.offset)
            while rhs.kind == self.K.UNEXPOSED_EXPR and len(self.children(rhs)) == 1:
                rhs = self.children(rhs)[0]
            if self.t[i].text == "=" and rhs.kind == self.K.CALL_EXPR and self.is_shfl_call(rhs):
                call = (lhs, rhs)
        if call is None:
            self.refuse(
                line,
                "warp shuffle under a branch on the thread index",
                "every work-item of the group must reach a shuffle in the portable form: move it out of the branch",
            )
        lhs, rhs = call
        n = len([x for x in self.deferred])
        tmp = f"hamr_t{n}"
        ty = self.sub(lhs.type.spelling)

        def apply():
            a, b = self.rw.idx(rhs.extent.start.offset), self.rw.end_idx(rhs)
            value = self.rw.render(a, b, self.e)
            self.e.replace_range(a, b, tmp)
            i = self.rw.idx(c.extent.start.offset)
            self.e.before(i, f"{{ {ty} {tmp} = {value}; ")
            end = self.rw.end_idx(c)
            self.e.after(end if self.t[end].text == ";" else end - 1, " }")

        self.deferred.append(apply)
        self.note(
            line,
            "warp shuffle under a branch",
            "if-converted: the call runs in every thread, the branch keeps the assignment",
        )

    def is_shfl_call(self, c) -> bool:
        i = self.rw.idx(c.extent.start.offset)
        name = self.t[i].text
        if name not in self.rw.shfl_funcs and name not in tb.SHUFFLES:
            return False
        j = self.rw.end_idx(c)
        return not any(t.text in self.rw.shfl_funcs or t.text in tb.SHUFFLES for t in self.t[i + 1 : j])

    def has_shuffle(self, c) -> bool:
        i, j = self.rw.idx(c.extent.start.offset), self.rw.end_idx(c)
        names = self.rw.shfl_funcs | set(tb.SHUFFLES) | set(tb.LEGACY_SHUFFLES)
        return any(t.text in names for t in self.t[i:j])

    # ---- token rules
    def tokens(self) -> None:
        TokenRules(self.rw, self.e, self.note, self.inst.subst).apply(self.f.lparen, self.f.end)

    def assemble(self) -> None:
        f, rw, e = self.f, self.rw, self.e
        ret = []
        k = f.start
        while k < f.name_tok:
            t = self.t[k].text
            if t == "template":
                k = matching(self.t, k + 1, "<", ">") + 1
                continue
            if t == "__launch_bounds__":
                k = matching(self.t, k + 1, "(", ")") + 1
                continue
            if t == "extern" and k + 1 < f.name_tok and self.t[k + 1].text.startswith('"'):
                k += 2
                continue
            if t not in tb.QUALIFIERS and t not in tb.DROPPED:
                ret.append(tb.TYPES.get(t, self.sub(t)))
            k += 1
        ret_type = " ".join(x for x in ret if x)
        if self.kernel and ret_type != "void":
            raise Refusal(self.t[f.name_tok].line, f"kernel {f.name}", "a kernel returns void")
        params = rw.render(f.lparen, f.rparen, e)
        extra = self.extra_params + ([h.param for h in self.inst.hidden] if not self.kernel else [])
        if extra:
            empty = f.rparen == f.lparen + 1 or (f.rparen == f.lparen + 2 and self.t[f.lparen + 1].text == "void")
            params = ("(" if empty else params + ", ") + ", ".join(extra)
        head = f"__kernel void {self.inst.name}" if self.kernel else f"H_DEVICE {ret_type} {self.inst.name}"
        if self.hoisted:
            gap = self.rw.p.text[self.t[f.body].end : self.t[f.body + 1].start]
            indent = "\n" + (gap.rsplit("\n", 1)[-1] if "\n" in gap else "  ")
            e.after(f.body, "".join(indent + h for h in self.hoisted))
        rest = rw.render(f.rparen, f.end, e)[1:]
        self.inst.text = f"{head}{params}){rest}"


class TokenRules:
    """Context-free spellings: builtins, intrinsics, math, types. Also used on #define bodies."""

    def __init__(self, rw: Rewriter, e: Edits, note, subst: dict[str, str]):
        self.rw, self.e, self.note, self.subst = rw, e, note, subst
        self.t = rw.t

    def apply(self, i: int, j: int) -> None:
        t, e = self.t, self.e
        k = i
        while k < j:
            if k in e.repl:
                k += 1
                continue
            s = t[k].text
            nxt = t[k + 1].text if k + 1 < j else ""
            line = t[k].line
            if s in tb.BUILTIN_VARS:
                if nxt != "." or k + 2 >= j or t[k + 2].text not in tb.AXES:
                    raise Refusal(line, s, "use it as " + s + ".x/.y/.z")
                e.replace(k, f"((unsigned){tb.BUILTIN_VARS[s]}({tb.AXES[t[k + 2].text]}))")
                e.delete(k + 1, k + 3)
                k += 3
                continue
            if s in self.subst and (k == 0 or t[k - 1].text not in (".", "->")):
                value = self.subst[s]
                if nxt == "(" and not value[:1].isdigit() and not value.startswith("-"):
                    e.replace(k, f"(({value})")  # T(x), T a type: a C cast
                    e.after(matching(t, k + 1, "(", ")"), ")")
                else:
                    e.replace(k, value)
            elif s == "__syncthreads" and nxt == "(":
                rp = matching(t, k + 1, "(", ")")
                e.replace(k, "barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE)")
                e.delete(k + 1, rp + 1)
                self.note(line, "__syncthreads", "barrier")
                k = rp + 1
                continue
            elif s == "__syncwarp" and nxt == "(":
                rp = matching(t, k + 1, "(", ")")
                mask = self.rw.text(k + 2, rp).replace(" ", "")
                if mask and self.resolve(mask) not in FULL_MASKS:
                    raise Refusal(line, "__syncwarp", f"partial mask {mask}")
                e.replace(k, "H_SYNCWARP()")
                e.delete(k + 1, rp + 1)
                k = rp + 1
                continue
            elif (s in tb.SHUFFLES or s in tb.LEGACY_SHUFFLES) and nxt == "(":
                self.shuffle(k, s, line)
            elif s in tb.REFUSED and self.refused_here(s, nxt):
                raise Refusal(line, s, tb.REFUSED[s])
            elif s in tb.TEXTURE_CALLS or (s.startswith("texture") and nxt == "<"):
                raise Refusal(line, s, "textures/surfaces are not in the portable form")
            elif s == "<<<":
                raise Refusal(line, "kernel launch", "dynamic parallelism (a kernel launching a kernel)")
            elif s in tb.MATH and nxt == "(" and s not in self.rw.funcs:
                e.replace(k, tb.MATH[s])
            elif s == "__ldg" and nxt == "(":
                e.replace(k, "(*")
                e.after(matching(t, k + 1, "(", ")"), ")")
            elif s == "__fdividef" and nxt == "(":
                rp = matching(t, k + 1, "(", ")")
                args = split_args(t, k + 1, rp)
                e.replace(k, "(")
                e.replace(args[0][1], ") / (")
                e.after(rp, ")")
            elif s == "__frcp_rn" and nxt == "(":
                e.replace(k, "(1.0f /")
                e.after(matching(t, k + 1, "(", ")"), ")")
            elif s == "__saturatef" and nxt == "(":
                e.replace(k, "fmin(fmax(")
                e.after(matching(t, k + 1, "(", ")"), ", 0.0f), 1.0f)")
            elif s in ("__fadd_rn", "__fmul_rn") and nxt == "(":
                rp = matching(t, k + 1, "(", ")")
                args = split_args(t, k + 1, rp)
                e.replace(k, "(")
                e.replace(args[0][1], ") + (" if s == "__fadd_rn" else ") * (")
                e.after(rp, ")")
            elif s in tb.WORDS:
                e.replace(k, tb.WORDS[s])
            elif s in tb.TYPES:
                e.replace(k, tb.TYPES[s])
            elif s in tb.DROPPED:
                e.delete(k)
            elif s == "long" and nxt == "long":
                e.delete(k + 1)
                k += 2
                continue
            elif s == "__launch_bounds__" and nxt == "(":
                rp = matching(t, k + 1, "(", ")")
                e.delete(k, rp + 1)
                k = rp + 1
                continue
            k += 1

    @staticmethod
    def refused_here(s: str, nxt: str) -> bool:
        if s in ("printf", "free", "malloc", "clock", "clock64"):
            return nxt == "("
        if s == "half":
            return nxt.isidentifier() or nxt == "*"
        return True

    def resolve(self, text: str) -> str:
        seen = 0
        while text in self.rw.defines and seen < 8:
            text = self.rw.defines[text].replace(" ", "").strip("()")
            seen += 1
        return text

    def shuffle(self, k: int, s: str, line: int) -> None:
        t, e = self.t, self.e
        rp = matching(t, k + 1, "(", ")")
        args = split_args(t, k + 1, rp)
        legacy = s in tb.LEGACY_SHUFFLES
        if not legacy:
            if len(args) < 3:
                raise Refusal(line, s, "expects (mask, value, lane)")
            mask = self.resolve(self.rw.text(*args[0]).replace(" ", ""))
            if mask not in FULL_MASKS:
                raise Refusal(line, s, f"mask {self.rw.text(*args[0])} is not the full warp (0xffffffff)")
            e.delete(args[0][0], args[1][0])
            rest = args[1:]
        else:
            rest = args
        if len(rest) == 3:
            width = self.resolve(self.rw.text(*rest[2]).replace(" ", ""))
            if width not in ("32", "warpSize"):
                raise Refusal(line, s, f"width {self.rw.text(*rest[2])}: only full warps (32) convert")
            e.delete(rest[1][1], rest[2][1])
        new = (tb.SHUFFLES | tb.LEGACY_SHUFFLES)[s]
        e.replace(k, new)
        self.note(line, s, new)
