"""`if (warp == 0) v = warp_sum(v);`: the shuffle call moves out of the branch, so that every work-item runs it:
`{ float hamr_t0 = warp_sum(v); if (warp == 0) v = hamr_t0; }`."""

from __future__ import annotations

from hamr.frontends.cuda.uniformity import SHUFFLE_NAMES


def shuffle_assignment(rw, c):
    """(lhs, call) of an `if` without else whose branch is one `lhs = call(...)` of a shuffle; else None."""
    K = rw.ci.CursorKind
    kids = list(c.get_children())
    if len(kids) != 2:
        return None
    stmt = kids[1]
    if stmt.kind == K.COMPOUND_STMT:
        inner = list(stmt.get_children())
        stmt = inner[0] if len(inner) == 1 else None
    if stmt is None or stmt.kind != K.BINARY_OPERATOR:
        return None
    lhs, rhs = stmt.get_children()
    while rhs.kind == K.UNEXPOSED_EXPR and len(list(rhs.get_children())) == 1:
        rhs = next(rhs.get_children())
    if rw.t[rw.end_idx(lhs)].text != "=" or rhs.kind != K.CALL_EXPR or not _one_shuffle_call(rw, rhs):
        return None
    return lhs, rhs


def _one_shuffle_call(rw, c) -> bool:
    """A call of a shuffle, or of a helper that shuffles, with no other shuffle in its arguments."""
    names = rw.shfl_funcs | set(SHUFFLE_NAMES)
    i, j = rw.span(c)
    return rw.t[i].text in names and not any(t.text in names for t in rw.t[i + 1 : j])


def if_convert(rw, e, c, call, tmp: str, ty: str) -> None:
    """Edits `e` to if-convert the `if` statement `c` around `call`; run once every other edit is in."""
    a, b = rw.span(call)
    value = rw.render(a, b, e)
    e.replace_range(a, b, tmp)
    e.before(rw.idx(c.extent.start.offset), f"{{ {ty} {tmp} = {value}; ")
    end = rw.end_idx(c)
    e.after(end if rw.t[end].text == ";" else end - 1, " }")
