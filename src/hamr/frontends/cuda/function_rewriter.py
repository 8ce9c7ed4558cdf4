"""One CUDA function (a kernel, or a helper instance) into hamr kernel C: the AST says what each token is, the
edits go to the file's own tokens."""

from __future__ import annotations

import re

from hamr.frontends.cuda import calls, casts, shared_memory
from hamr.frontends.cuda import tables as tb
from hamr.frontends.cuda.if_conversion import if_convert, shuffle_assignment
from hamr.frontends.cuda.model import GLOBAL, Instance, Refusal
from hamr.frontends.cuda.token_rules import TokenRules
from hamr.frontends.cuda.tokens import Edits, matching
from hamr.frontends.cuda.uniformity import ThreadTaint


class FunctionRewriter:
    def __init__(self, rw, inst: Instance):
        self.rw, self.inst, self.f = rw, inst, inst.func
        self.t = rw.t
        self.K = rw.ci.CursorKind
        self.TK = rw.ci.TypeKind
        self.e = Edits()
        self.env: dict[str, str] = {}  # pointer -> its address space
        self.kernel = self.f.kind == "kernel"
        self.extra_params: list[str] = []
        self.hoisted: list[str] = []
        self.deferred = []  # if-conversions, rendered once every other edit is in
        self.taint = None

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

    def space(self, c) -> str | None:
        """The address space an expression points into, where it is a pointer."""
        k = c.kind
        if k == self.K.DECL_REF_EXPR:
            return self.env.get(c.spelling)
        kids = list(c.get_children())
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

    def body_cursor(self):
        return next((ch for ch in self.f.cursor.get_children() if ch.kind == self.K.COMPOUND_STMT), self.f.cursor)

    # ---- the pass
    def run(self) -> None:
        self.refused_types()
        params = [p for p in self.f.cursor.get_children() if p.kind == self.K.PARM_DECL]
        # a helper's parameters may differ between work-items: that decides if-conversion only, which is safe
        tainted = [] if self.kernel else [p.spelling for p in params]
        self.taint = ThreadTaint(self.rw, self.rw.ci, self.f.cursor, self.rw.thread_sources, tainted)
        for p in params:
            self.param(p)
        self.walk(self.f.cursor)
        TokenRules(self.rw, self.e, self.note, self.inst.subst).apply(self.f.lparen, self.f.end)
        for fn in self.deferred:
            fn()
        self.assemble()

    def refused_types(self) -> None:
        t = self.t
        for k in range(self.f.start, self.f.end):
            s = t[k].text
            if s in tb.REFUSED_TYPES and TokenRules.refused_here(s, t[k + 1].text):
                self.refuse(t[k].line, s, tb.REFUSED[s])

    def param(self, p) -> None:
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

    def walk(self, c) -> None:
        for ch in c.get_children():
            if ch.kind == self.K.PARM_DECL and c is self.f.cursor:
                continue
            self.visit(ch, c)
            self.walk(ch)

    def visit(self, c, parent) -> None:
        K = self.K
        k = c.kind
        line = c.extent.start.line
        if k == K.VAR_DECL:
            self.var_decl(c, parent)
        elif k == K.CALL_EXPR:
            calls.call(self, c)
        elif k in (K.CXX_REINTERPRET_CAST_EXPR, K.CXX_STATIC_CAST_EXPR, K.CXX_CONST_CAST_EXPR):
            casts.named_cast(self, c)
        elif k == K.CSTYLE_CAST_EXPR:
            casts.c_cast(self, c)
        elif k == K.CXX_FUNCTIONAL_CAST_EXPR:
            casts.functional_cast(self, c)
        elif k == K.IF_STMT:
            self.if_stmt(c)
        elif k == K.DECL_REF_EXPR:
            self.global_ref(c, line)
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

    def global_ref(self, c, line: int) -> None:
        K, r = self.K, c.referenced
        if r is None or r.kind != K.VAR_DECL or r.semantic_parent is None:
            return
        local = self.f.cursor.extent.start.offset <= r.extent.start.offset < self.f.cursor.extent.end.offset
        if r.semantic_parent.kind in (K.TRANSLATION_UNIT, K.NAMESPACE) and self.rw.in_file(r) and not local:
            if r.spelling not in self.rw.defines:
                self.refuse(
                    line,
                    f"global variable {r.spelling}",
                    "__constant__/__device__ globals are not in the portable form: pass it as a buffer argument",
                )

    # ---- declarations
    def var_decl(self, c, parent) -> None:
        K, TK = self.K, self.TK
        line = c.location.line
        ty = c.type
        kids = list(c.get_children())
        if ty.kind in (TK.LVALUEREFERENCE, TK.RVALUEREFERENCE):
            self.refuse(line, f"reference {c.spelling}", "the portable form has no references")
        if any(a.kind == K.CUDASHARED_ATTR for a in kids):
            shared_memory.shared(self, c, parent)
            return
        if any(a.kind == K.CUDACONSTANT_ATTR for a in kids) or c.storage_class == self.rw.ci.StorageClass.STATIC:
            self.refuse(line, f"static variable {c.spelling}", "static/__constant__ variables in device code")
        first = self.rw.idx(c.extent.start.offset)
        if self.t[first].text == "auto" or (self.t[first].text == "const" and self.t[first + 1].text == "auto"):
            a = first if self.t[first].text == "auto" else first + 1
            self.e.replace(a, self.sub(ty.spelling.replace("const ", "")))
        expr = [ch for ch in kids if ch.kind not in (K.TYPE_REF, K.TEMPLATE_REF, K.NAMESPACE_REF)]
        if ty.get_canonical().kind == TK.RECORD and self.sub(ty.spelling).replace("const ", "") not in tb.VECTOR_TYPES:
            self.refuse(line, f"variable {c.spelling}", f"struct/class type {ty.spelling} in device code")
        if ty.kind == TK.POINTER or (ty.kind in (TK.DEPENDENT, TK.UNEXPOSED) and "*" in ty.spelling):
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
        """The address space of a pointer declared without a value, from its first assignment."""
        for n in self.f.cursor.walk_preorder():
            if n.kind == self.K.BINARY_OPERATOR:
                kids = list(n.get_children())
                if len(kids) == 2 and kids[0].kind == self.K.DECL_REF_EXPR and kids[0].spelling == var.spelling:
                    if self.t[self.rw.end_idx(kids[0])].text == "=":
                        return self.space(kids[1])
        return None

    # ---- shuffles under a branch (what cannot be if-converted, divergence.py refuses)
    def if_stmt(self, c) -> None:
        cond = next(c.get_children(), None)
        if cond is None or not self.taint.taints(cond):
            return
        found = shuffle_assignment(self.rw, c)
        if found is None:
            return
        lhs, call = found
        tmp, ty = f"hamr_t{len(self.deferred)}", self.sub(lhs.type.spelling)
        self.deferred.append(lambda: if_convert(self.rw, self.e, c, call, tmp, ty))
        self.note(
            c.extent.start.line,
            "warp shuffle under a branch",
            "if-converted: the call runs in every thread, the branch keeps the assignment",
        )

    # ---- the function's text
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
            gap = rw.p.text[self.t[f.body].end : self.t[f.body + 1].start]
            indent = "\n" + (gap.rsplit("\n", 1)[-1] if "\n" in gap else "  ")
            e.after(f.body, "".join(indent + h for h in self.hoisted))
        rest = rw.render(f.rparen, f.end, e)[1:]
        self.inst.text = f"{head}{params}){rest}"
