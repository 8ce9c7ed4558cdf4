"""Refuses the divergence the emulation cannot run. Where shuffles and barriers are emulated with work-group
barriers (cpu, OpenCL), every work-item of the group must reach each of them: none may sit under a branch or in a
loop on the thread index, or after a `return`, `break` or `continue` that only some work-items take."""

from __future__ import annotations

from hamr.frontends.cuda import tables as tb
from hamr.frontends.cuda.if_conversion import shuffle_assignment
from hamr.frontends.cuda.model import Func, Refusal
from hamr.frontends.cuda.tokens import matching, split_args
from hamr.frontends.cuda.uniformity import SHUFFLE_NAMES, ThreadTaint, macros_using, users

WHY = "the portable form emulates it with work-group barriers, which every work-item of the group must reach"


class Divergence:
    """Checks a kernel and the helpers it calls, each helper once per set of thread-dependent parameters."""

    def __init__(self, rw):
        self.rw = rw
        names = tb.BARRIERS | SHUFFLE_NAMES
        self.funcs = users(rw, rw.funcs, names)
        self.macros = macros_using(rw.defines, names | self.funcs)
        self.syncing = names | self.funcs | self.macros
        self.checked: set[tuple[str, frozenset]] = set()

    def kernel(self, func: Func) -> None:
        self.function(func, frozenset())

    def function(self, func: Func, params: frozenset) -> None:
        if (func.name, params) not in self.checked:
            self.checked.add((func.name, params))
            FunctionCheck(self, func, params).run()

    def what(self, name: str) -> str:
        if name in SHUFFLE_NAMES or name in self.rw.shfl_funcs:
            return "warp shuffle"
        return name if name in tb.BARRIERS else "barrier"


class FunctionCheck:
    def __init__(self, d: Divergence, func: Func, params: frozenset):
        self.d, self.rw, self.f = d, d.rw, func
        self.K = self.rw.ci.CursorKind
        self.taint = ThreadTaint(self.rw, self.rw.ci, func.cursor, self.rw.thread_sources, params)
        self.syncs = [k for k in range(func.body, func.end) if self.is_sync(k)]

    def is_sync(self, k: int) -> bool:
        """A barrier, a shuffle, or a call of a helper with one (direct, or through a macro)."""
        t, s = self.rw.t, self.rw.t[k].text
        if s not in self.d.syncing or t[k - 1].text in (".", "->"):
            return False
        if s in self.d.macros or t[k + 1].text == "(":
            return True
        try:
            return t[k + 1].text == "<" and t[matching(t, k + 1, "<", ">") + 1].text == "("
        except (Refusal, IndexError):
            return False

    def run(self) -> None:
        self.walk(self.f.cursor, (), ())
        for k in self.syncs:
            callee = self.rw.funcs.get(self.rw.t[k].text)
            if callee is not None and callee is not self.f:
                self.d.function(callee, self.tainted_params(k, callee))

    def tainted_params(self, k: int, callee: Func) -> frozenset:
        t = self.rw.t
        lp = k + 1
        if t[lp].text == "<":
            lp = matching(t, lp, "<", ">") + 1
        if t[lp].text != "(":
            return frozenset()
        args = split_args(t, lp, matching(t, lp, "(", ")"))
        params = [p.spelling for p in callee.cursor.get_children() if p.kind == self.K.PARM_DECL]
        return frozenset(p for p, (a, b) in zip(params, args) if self.taint.taints_tokens(a, b))

    def syncs_in(self, i: int, j: int) -> list[int]:
        return [k for k in self.syncs if i <= k < j]

    def refuse(self, k: int, construct: str, detail: str):
        raise Refusal(self.rw.t[k].line, construct, detail)

    def walk(self, c, divergent: tuple, targets: tuple) -> None:
        """`divergent`: the enclosing branches and loops on the thread index; `targets`: of break and continue."""
        K = self.K
        k = c.kind
        if self.taint.divergent(c) or self.divergent_operator(c):
            if not divergent:
                if k == K.IF_STMT and shuffle_assignment(self.rw, c) is not None:
                    return  # if-converted
                self.branch(c)
            divergent = (*divergent, c)
        if k in (K.FOR_STMT, K.WHILE_STMT, K.DO_STMT, K.SWITCH_STMT):
            targets = (*targets, c)
        elif k == K.RETURN_STMT and divergent:
            self.early_return(c)
        elif k in (K.BREAK_STMT, K.CONTINUE_STMT):
            self.early_exit(c, divergent, targets)
        elif k == K.GOTO_STMT and divergent and self.syncs:
            self.refuse(self.rw.idx(c.extent.start.offset), "goto under a branch on the thread index", WHY)
        for ch in c.get_children():
            self.walk(ch, divergent, targets)

    def divergent_operator(self, c) -> bool:
        """`a && b`, `a || b` with a thread-dependent `a`: only some work-items evaluate `b`."""
        if c.kind != self.K.BINARY_OPERATOR:
            return False
        kids = list(c.get_children())
        op = self.rw.t[self.rw.end_idx(kids[0])].text if len(kids) == 2 else ""
        return op in ("&&", "||") and self.taint.taints(kids[0]) and bool(self.syncs_in(*self.rw.span(kids[1])))

    def branch(self, c) -> None:
        """A branch or loop on the thread index: no barrier or shuffle inside."""
        K, rw = self.K, self.rw
        loop = c.kind in (K.FOR_STMT, K.WHILE_STMT, K.DO_STMT)
        if loop:
            inside = self.syncs_in(*rw.span(c))
        else:
            inside = self.syncs_in(rw.end_idx(next(c.get_children())), rw.end_idx(c))
        if not inside:
            return
        k, line = inside[0], rw.t[rw.idx(c.extent.start.offset)].line
        what, name = self.d.what(rw.t[k].text), self.describe(k)
        if loop:
            leaving = self.divergent_exit(c, False)
            if leaving is not None:  # the loop depends on the thread index through it
                word = {K.BREAK_STMT: "break", K.CONTINUE_STMT: "continue"}.get(leaving.kind, "return")
                who = (
                    "work-items that return here never reach"
                    if word == "return"
                    else "work-items that leave early skip"
                )
                self.exit(rw.idx(leaving.extent.start.offset), word, k, who)
            self.refuse(
                k,
                f"{what} in a loop on the thread index",
                f"the loop at line {line} runs a different number of times per work-item, so not all of them reach"
                f" {name}; {WHY}: loop the same number of times in every work-item and guard the body instead",
            )
        if c.kind in (K.CONDITIONAL_OPERATOR, K.BINARY_OPERATOR):
            where, who = "a condition", f"for which the condition at line {line} holds"
        else:
            where, who = "a branch", f"that take the branch at line {line}"
        self.refuse(
            k,
            f"{what} under {where} on the thread index",
            f"{name} runs only in the work-items {who}; {WHY}: move it out of the branch and keep its result"
            " where needed",
        )

    def divergent_exit(self, c, divergent: bool):
        """The first break, continue or return in `c` under a branch on the thread index inside it."""
        K = self.K
        for ch in c.get_children():
            if divergent and ch.kind in (K.BREAK_STMT, K.CONTINUE_STMT, K.RETURN_STMT):
                return ch
            found = self.divergent_exit(ch, divergent or self.taint.divergent(ch))
            if found is not None:
                return found
        return None

    def describe(self, k: int) -> str:
        name = self.rw.t[k].text
        if name in tb.BARRIERS | SHUFFLE_NAMES:
            return name
        return f"the {self.d.what(name)} in {name}"

    def early_return(self, c) -> None:
        """A `return` only some work-items take: no barrier or shuffle may follow it."""
        i, j = self.rw.span(c)
        later = [k for k in self.syncs if k >= j] or self.in_enclosing_loops(c)
        if later:
            self.exit(i, "return", later[0], "work-items that return here never reach")

    def early_exit(self, c, divergent: tuple, targets: tuple) -> None:
        """A `break` or `continue` only some work-items take: the loop it leaves may hold no barrier or shuffle."""
        K = self.K
        loops = [t for t in targets if c.kind == K.BREAK_STMT or t.kind != K.SWITCH_STMT]
        if not loops or loops[-1].kind == K.SWITCH_STMT:
            return
        loop = loops[-1]
        if not any(d.extent.start.offset > loop.extent.start.offset for d in divergent):
            return
        inside = self.syncs_in(*self.rw.span(loop))
        if inside:
            word = "break" if c.kind == K.BREAK_STMT else "continue"
            self.exit(self.rw.idx(c.extent.start.offset), word, inside[0], "work-items that leave early skip")

    def in_enclosing_loops(self, c) -> list[int]:
        K, o = self.K, c.extent.start.offset
        loops = [
            n
            for n in self.f.cursor.walk_preorder()
            if n.kind in (K.FOR_STMT, K.WHILE_STMT, K.DO_STMT) and n.extent.start.offset < o < n.extent.end.offset
        ]
        return [k for n in loops for k in self.syncs_in(*self.rw.span(n))]

    def exit(self, i: int, word: str, k: int, who: str) -> None:
        self.refuse(
            i,
            f"{word} under a branch on the thread index",
            f"{who} {self.describe(k)} at line {self.rw.t[k].line}; {WHY}: guard the work with the condition instead"
            " of leaving early",
        )
