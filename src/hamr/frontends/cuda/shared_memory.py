"""`__shared__` declarations into `__local` ones: at the kernel's top level, as the kernel's last parameter
(`extern`), or declared by the kernel and passed down (`static __shared__` in a helper)."""

from __future__ import annotations

from hamr.frontends.cuda.model import LOCAL, Hidden


def shared(fr, c, parent) -> None:
    line = c.location.line
    i, j = _statement(fr, c, parent)
    elem, name, dims = _declaration(fr, i, j)
    fr.env[c.spelling] = LOCAL
    e = fr.e
    if c.storage_class == fr.rw.ci.StorageClass.EXTERN:
        if not fr.kernel:
            fr.refuse(
                line,
                f"extern __shared__ {name}",
                "in a __device__ function: declare it in the kernel and pass a pointer",
            )
        if fr.extra_params:
            fr.refuse(line, f"extern __shared__ {name}", "one extern __shared__ array per kernel")
        fr.extra_params.append(f"{LOCAL} {elem} *{name}")
        e.delete(i, j)
        fr.note(line, "extern __shared__", f"last parameter __local {elem} *{name}")
        return
    if fr.kernel:
        body_level = any(
            s.kind == fr.K.DECL_STMT and s.extent.start.offset == parent.extent.start.offset
            for s in fr.body_cursor().get_children()
        )
        e.delete(i, j)
        if body_level:
            e.before(i, f"{LOCAL} {elem} {name}{dims};")
            fr.note(line, "__shared__", f"__local {elem} {name}{dims}")
        else:
            fr.hoisted.append(f"{LOCAL} {elem} {name}{dims};")
            fr.note(line, "__shared__ in a nested block", "hoisted to the kernel's top level")
        return
    if not dims:
        fr.refuse(line, f"__shared__ {name}", "a scalar __shared__ variable in a helper: make it an array")
    rest = dims[dims.index("]") + 1 :]
    hname = f"hamr_{fr.f.name}_{name}"
    h = Hidden(hname, f"{LOCAL} {elem} {hname}{dims};", elem, rest)
    h.param = param = h.as_param(name)
    fr.inst.hidden.append(h)
    e.delete(i, j)
    fr.note(line, "__shared__ in a __device__ function", f"declared by the kernel, passed as {param}")


def _statement(fr, c, parent) -> tuple[int, int]:
    if parent is None or parent.kind != fr.K.DECL_STMT:
        fr.refuse(c.location.line, f"__shared__ {c.spelling}", "not a declaration statement")
    if len([v for v in parent.get_children() if v.kind == fr.K.VAR_DECL]) > 1:
        fr.refuse(c.location.line, f"__shared__ {c.spelling}", "declare one __shared__ array per statement")
    return fr.rw.span(parent)


def _declaration(fr, i: int, j: int) -> tuple[str, str, str]:
    """(element type, name, dims) of `[static] [extern] __shared__ T name[A][B];`"""
    toks = [t.text for t in fr.t[i:j]]
    toks = [t for t in toks if t not in ("static", "extern", "__shared__", ";", "volatile")]
    if "__align__" in toks:
        a = toks.index("__align__")
        toks = toks[:a] + toks[a + 4 :]
    if "[" in toks:
        b = toks.index("[")
        head, dims = toks[:b], toks[b:]
    else:
        head, dims = toks, []
    return fr.sub(" ".join(head[:-1])), head[-1], "".join(fr.sub(d) if d.isidentifier() else d for d in dims)
