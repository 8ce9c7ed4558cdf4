"""Calls: helpers instantiated for their template arguments and the address spaces of their pointer arguments,
their hidden local memory passed along; atomics into the form's atomics."""

from __future__ import annotations

from hamr.frontends.cuda import tables as tb
from hamr.frontends.cuda.model import Func, Hidden
from hamr.frontends.cuda.tokens import matching, split_args


def call(fr, c) -> None:
    K, t, rw, e = fr.K, fr.t, fr.rw, fr.e
    line = c.extent.start.line
    name = c.spelling
    kids = list(c.get_children())
    if not name and kids:
        name = kids[0].spelling or (kids[0].referenced.spelling if kids[0].referenced else "")
    i = rw.idx(c.extent.start.offset)
    if name in tb.ATOMICS:
        atomic(fr, c, name, line)
        return
    callee = rw.funcs.get(name)
    if callee is None or t[i].text != name:
        ref = c.referenced
        if ref is not None and ref.kind in (K.CXX_METHOD, K.CONSTRUCTOR) and rw.in_file(ref):
            fr.refuse(line, f"call to {name}", "C++ classes in device code")
        return
    if callee.kind == "kernel":
        fr.refuse(line, f"launch of {name}", "dynamic parallelism (a kernel launching a kernel)")
    if callee.kind == "host":
        fr.refuse(line, f"call to {name}", "a host function called from device code")
    lp = i + 1
    targs: list[str] = []
    if t[lp].text == "<":
        close = matching(t, lp, "<", ">")
        targs = [fr.sub(rw.text(a, b)) for a, b in split_args(t, lp, close)]
        e.delete(lp, close + 1)
        lp = close + 1
    if t[lp].text != "(":
        return
    rp = matching(t, lp, "(", ")")
    args = list(c.get_arguments())
    subst = _deduce(fr, callee, targs, args, line)
    spaces = []
    params = [p for p in callee.cursor.get_children() if p.kind == K.PARM_DECL]
    for n, p in enumerate(params):
        if fr.pointerish(p.type):
            if n >= len(args):
                fr.refuse(line, f"call to {name}", "default pointer arguments")
            sp = fr.space(args[n])
            if sp is None:
                fr.refuse(line, f"call to {name}", f"cannot tell the address space of argument {n + 1}")
            spaces.append((p.spelling, sp))
    iname = rw.helper_name(callee, [subst[x] for x in callee.tparams], tuple(spaces))
    inst = rw.instance(callee, subst, iname, tuple(spaces))
    fr.inst.helpers.append(inst)
    e.replace(i, iname)
    if inst.hidden:
        e.before(rp, (", " if rp > lp + 1 else "") + ", ".join(h.name for h in inst.hidden))
        for h in inst.hidden:
            if fr.kernel:
                if h.decl not in fr.hoisted:
                    fr.hoisted.append(h.decl)
            elif h.name not in [x.name for x in fr.inst.hidden]:
                fr.inst.hidden.append(Hidden(h.name, h.decl, h.elem, h.rest, h.as_param(h.name)))


def _deduce(fr, callee: Func, targs: list[str], args, line: int) -> dict[str, str]:
    subst = dict(zip(callee.tparams, targs))
    params = [p for p in callee.cursor.get_children() if p.kind == fr.K.PARM_DECL]
    for p, a in zip(params, args):
        pt = p.type.spelling.replace("const ", "").replace("__restrict", "").replace("&", "").strip()
        at = fr.sub(a.type.spelling).replace("const ", "").replace("&", "").strip()
        star = pt.endswith("*")
        pt = pt.rstrip("* ")
        if pt in callee.tparams and pt not in subst:
            subst[pt] = at.rstrip("* ") if star else at
    missing = [x for x in callee.tparams if x not in subst or "dependent" in subst[x]]
    if missing:
        fr.refuse(line, f"call to {callee.name}", f"cannot deduce template argument {missing[0]}: give it explicitly")
    return subst


def atomic(fr, c, name: str, line: int) -> None:
    t, rw, e = fr.t, fr.rw, fr.e
    args = list(c.get_arguments())
    if not args:
        return
    pointee = fr.sub(args[0].type.get_pointee().spelling)
    if not pointee:
        refs = [n for n in args[0].walk_preorder() if n.kind == fr.K.DECL_REF_EXPR and fr.pointerish(n.type)]
        pointee = fr.sub(refs[0].type.spelling).rstrip("* ") if refs else "an unknown type"
    pointee = pointee.replace("const ", "").replace("volatile ", "").strip()
    pointee = {"unsigned": "unsigned int", "uint": "unsigned int"}.get(pointee, pointee)
    if pointee not in tb.ATOMIC_TYPES or (name in tb.ATOMIC_INT_ONLY and pointee == "float"):
        fr.refuse(line, f"{name} on {pointee}", "the portable form's atomics are on int, uint and float")
    i = rw.idx(c.extent.start.offset)
    if t[i].text != name:
        fr.refuse(line, name, "spelled through a macro")
    lp = i + 1
    rp = matching(t, lp, "(", ")")
    if name == "atomicInc":
        a = split_args(t, lp, rp)
        limit = rw.text(*a[1]) if len(a) == 2 else ""
        if limit.replace(" ", "") not in tb.FULL_MASKS | {"UINT_MAX"}:
            fr.refuse(line, "atomicInc", "wraps at a limit; only atomicInc(p, 0xffffffff) (add 1) converts")
        e.delete(a[0][1], a[1][1])
    e.replace(i, tb.ATOMICS[name])
    fr.note(line, name, f"{tb.ATOMICS[name]} on {pointee}")
