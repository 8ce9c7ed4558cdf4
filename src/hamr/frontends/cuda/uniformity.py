"""Which values can differ between the work-items of a group: the thread index, shuffles and atomics, and what is
computed from them, assigned from them or assigned under a branch on them. Shared memory is one value per group."""

from __future__ import annotations

import re

from hamr.frontends.cuda import tables as tb
from hamr.frontends.cuda.tokens import matching, split_args

SOURCES = {"threadIdx"} | set(tb.SHUFFLES) | set(tb.LEGACY_SHUFFLES) | set(tb.VOTES) | set(tb.ATOMICS)
SHUFFLE_NAMES = set(tb.SHUFFLES) | set(tb.LEGACY_SHUFFLES) | set(tb.VOTES)
ASSIGNMENTS = {"=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>="}


def users(view, funcs: dict, names: set[str]) -> set[str]:
    """The helpers whose bodies use one of `names`, directly or through another such helper."""
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for f in funcs.values():
            if f.kind != "device":
                continue
            if f.name not in found and any(t.text in names or t.text in found for t in view.t[f.body : f.end]):
                found.add(f.name)
                changed = True
    return found


def macros_using(defines: dict[str, str], names: set[str]) -> set[str]:
    """The object-like macros whose body names one of `names`."""
    return {m for m, body in defines.items() if set(re.findall(r"[A-Za-z_]\w*", body)) & names}


def thread_sources(view, funcs: dict, defines: dict[str, str]) -> set[str]:
    """Names whose value differs between work-items wherever they appear: builtins, and functions and macros using them."""
    names = SOURCES | users(view, funcs, SOURCES)
    return names | macros_using(defines, names)


class ThreadTaint:
    """The thread-dependent variables of one function, given its thread-dependent parameters."""

    def __init__(self, view, ci, cursor, sources: set[str], params=()):
        self.view, self.K = view, ci.CursorKind
        self.sources = sources
        self.vars: set[str] = set(params)
        K = self.K
        self.shared = {
            n.spelling
            for n in cursor.walk_preorder()
            if n.kind == K.VAR_DECL and any(a.kind == K.CUDASHARED_ATTR for a in n.get_children())
        }
        while self._walk(cursor, False):
            pass

    def taints(self, c) -> bool:
        return self.taints_tokens(*self.view.span(c))

    def taints_tokens(self, i: int, j: int) -> bool:
        t = self.view.t
        for k in range(i, j):
            s = t[k].text
            if (s in self.sources or s in self.vars) and (k == 0 or t[k - 1].text not in (".", "->")):
                return True
        return False

    def loop_condition(self, c) -> tuple[int, int]:
        """The token range of a loop's condition."""
        K, view = self.K, self.view
        if c.kind == K.FOR_STMT:
            lp = view.idx(c.extent.start.offset) + 1
            parts = split_args(view.t, lp, matching(view.t, lp, "(", ")"), sep=";")
            return parts[1] if len(parts) > 1 else (lp, lp)
        kids = list(c.get_children())
        return view.span(kids[-1] if c.kind == K.DO_STMT else kids[0])

    def condition(self, c) -> tuple[int, int] | None:
        """The token range of the condition of a branch or loop; None for other cursors."""
        K = self.K
        if c.kind in (K.FOR_STMT, K.WHILE_STMT, K.DO_STMT):
            return self.loop_condition(c)
        if c.kind in (K.IF_STMT, K.SWITCH_STMT, K.CONDITIONAL_OPERATOR):
            return self.view.span(next(c.get_children()))
        return None

    def divergent(self, c) -> bool:
        """A branch or loop whose work-items can take different paths."""
        cond = self.condition(c)
        return cond is not None and self.taints_tokens(*cond)

    def _assigned(self, lhs) -> str | None:
        """The variable an assignment to `lhs` changes, where that can make it thread-dependent."""
        K = self.K
        while lhs.kind in (K.UNEXPOSED_EXPR, K.PAREN_EXPR):
            kids = list(lhs.get_children())
            if len(kids) != 1:
                return None
            lhs = kids[0]
        if lhs.kind == K.DECL_REF_EXPR:
            return lhs.spelling if lhs.spelling not in self.shared else None
        if lhs.kind in (K.ARRAY_SUBSCRIPT_EXPR, K.MEMBER_REF_EXPR):
            base = next(lhs.get_children(), None)
            while base is not None and base.kind in (K.ARRAY_SUBSCRIPT_EXPR, K.MEMBER_REF_EXPR, K.UNEXPOSED_EXPR):
                base = next(base.get_children(), None)
            if base is None or base.kind != K.DECL_REF_EXPR or base.spelling in self.shared:
                return None
            ref = base.referenced
            return base.spelling if ref is None or "*" not in ref.type.spelling else None  # memory, not the pointer
        return None

    def _add(self, name: str | None) -> bool:
        if name is None or name in self.vars:
            return False
        self.vars.add(name)
        return True

    def _walk(self, c, controlled: bool) -> bool:
        K, view = self.K, self.view
        kids = list(c.get_children())
        changed = False
        if c.kind == K.VAR_DECL and c.spelling not in self.shared:
            if self.taints_tokens(view.idx(c.location.offset) + 1, view.end_idx(c)):
                changed |= self._add(c.spelling)
        elif c.kind in (K.BINARY_OPERATOR, K.COMPOUND_ASSIGNMENT_OPERATOR) and len(kids) == 2:
            if view.t[view.end_idx(kids[0])].text in ASSIGNMENTS and (controlled or self.taints(kids[1])):
                changed |= self._add(self._assigned(kids[0]))
        elif c.kind == K.UNARY_OPERATOR and controlled and kids:
            i, j = view.span(c)
            if {view.t[i].text, view.t[j - 1].text} & {"++", "--"}:
                changed |= self._add(self._assigned(kids[0]))
        inner = controlled or self.divergent(c) or self._exits_divergently(c)
        for ch in kids:
            changed |= self._walk(ch, inner)
        return changed

    def _exits_divergently(self, c) -> bool:
        """A loop some work-items can leave early (a break or return under a thread-dependent branch)."""
        K = self.K
        if c.kind not in (K.FOR_STMT, K.WHILE_STMT, K.DO_STMT):
            return False
        nodes = list(c.walk_preorder())
        exits = any(n.kind in (K.BREAK_STMT, K.RETURN_STMT, K.GOTO_STMT) for n in nodes)
        return exits and any(n is not c and self.divergent(n) for n in nodes)
