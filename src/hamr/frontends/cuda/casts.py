"""C++ casts into C casts; a pointer cast takes the address space of its operand."""

from __future__ import annotations

from hamr.frontends.cuda import tables as tb
from hamr.frontends.cuda.tokens import matching


def named_cast(fr, c) -> None:
    """`static_cast<T>(x)`, `reinterpret_cast<T *>(p)`, `const_cast`: `((T)(x))`."""
    t, rw, e = fr.t, fr.rw, fr.e
    i = rw.idx(c.extent.start.offset)
    if t[i + 1].text != "<":
        return
    close = matching(t, i + 1, "<", ">")
    rp = matching(t, close + 1, "(", ")")
    e.replace(i, "((")
    e.delete(i + 1)
    e.replace(close, ")")
    e.after(rp, ")")
    if fr.pointerish(c.type):
        sp = fr.space(list(c.get_children())[-1])
        if sp is None:
            fr.refuse(c.extent.start.line, t[i].text, "cannot tell the address space of the cast pointer")
        e.before(i + 2, sp + " ")
        fr.note(c.extent.start.line, t[i].text, f"C cast to a {sp} pointer")


def c_cast(fr, c) -> None:
    """`(T *)p`: the address space goes in."""
    if not fr.pointerish(c.type):
        return
    i = fr.rw.idx(c.extent.start.offset)
    sp = fr.space(list(c.get_children())[-1])
    if sp is None:
        fr.refuse(c.extent.start.line, "pointer cast", "cannot tell the address space of the cast pointer")
    fr.e.before(i + 1, sp + " ")


def functional_cast(fr, c) -> None:
    """`float(x)`: `((float)(x))`; constructors of structs are refused."""
    t, rw, e = fr.t, fr.rw, fr.e
    i, j = rw.span(c)
    lp = next((k for k in range(i, j) if t[k].text == "("), None)
    ty = fr.sub(c.type.spelling)
    if lp is None or ty in tb.VECTOR_TYPES or c.type.get_canonical().kind == fr.TK.RECORD:
        fr.refuse(c.extent.start.line, f"{ty}(...)", "C++ constructor syntax for a struct")
    e.before(i, "((")
    e.after(lp - 1, ")")
    e.after(j - 1, ")")
