"""hamr kernel C (the portable kernel form) rewritten for one dialect.

The source is OpenCL C 1.2 spellings plus ``H_*`` macros (docs/kernels.md). What a prelude cannot
map by macros is edited here, token by token:

- ``__local``: a declaration at a kernel's top level becomes the dialect's group memory
  (``__shared__`` on GPUs; ``static _Thread_local`` in C, where one OS thread runs a whole
  work-group as fibers); elsewhere (a parameter, a cast) it is dropped outside OpenCL.
- the dynamic local parameter: CUDA and HIP have no such parameter; it becomes a pointer into
  ``extern __shared__`` memory, sized at launch.
- warp shuffles in OpenCL: emulated through a hidden ``__local`` scratch buffer that every function
  that shuffles takes as a parameter (OpenCL 1.2 declares local memory only in kernels).
"""

from __future__ import annotations

from hamr.ops.kernel_source import Function, KernelSource, Token, tokens

SCRATCH = "h_shfl"  # the hidden scratch parameter of OpenCL functions that shuffle
STATEMENT_START = {";", "{", "}"}


def rewrite(source: KernelSource, dialect: str) -> str:
    """The source text as `dialect` (opencl, c, cuda, hip) compiles it, without the prelude."""
    edits = _dialect_edits(source, dialect, kernel_scratch=True)
    for function in source.functions.values():
        if dialect in ("cuda", "hip") and function.local_param is not None:
            edits += _dynamic_shared(source.text, function)
    return _apply(source.text, edits)


def _apply(text: str, edits: list[tuple[int, int, str]], escape: bool = False) -> str:
    """`text` with the edits made; `escape`: the untouched text's `$` doubled, for a `render` template."""
    keep = (lambda part: part.replace("$", "$$")) if escape else (lambda part: part)
    out, at = [], 0
    for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1])):
        if start < at:
            continue  # inside a span an earlier edit replaced whole (the dropped dynamic local parameter)
        out += [keep(text[at:start]), replacement]
        at = end
    return "".join(out) + keep(text[at:])


def _inside(toks: list[Token], span: tuple[int, int]) -> list[Token]:
    return [t for t in toks if span[0] <= t.start < span[1]]


def _local_edits(toks: list[Token], function: Function, dialect: str) -> list[tuple[int, int, str]]:
    if dialect == "opencl":
        return []
    edits = []
    for t in _inside(toks, function.params_span):
        if t.text == "__local":
            edits.append((t.start, t.end, ""))
    body = _inside(toks, function.body_span)
    for k, t in enumerate(body):
        if t.text != "__local":
            continue
        declaration = function.is_kernel and k > 0 and body[k - 1].text in STATEMENT_START and not _is_pointer(body, k)
        group_memory = {"c": "static _Thread_local", "cuda": "__shared__", "hip": "__shared__"}[dialect]
        edits.append((t.start, t.end, group_memory if declaration else ""))
    return edits


def _is_pointer(body: list[Token], k: int) -> bool:
    """Whether the declaration starting at body[k] (``__local``) declares a pointer into local memory, not an array."""
    for t in body[k + 1 :]:
        if t.text == "*":
            return True
        if t.kind != "name":
            return False
    return False


def _dynamic_shared(text: str, function: Function) -> list[tuple[int, int, str]]:
    """Drop the kernel's __local parameter; the body starts by pointing it into extern shared memory."""
    param = function.local_param
    inner = text[function.params_span[0] : function.params_span[1]]
    comma = inner.rfind(",")
    start = function.params_span[0] + (comma if comma >= 0 else 0)
    declare = (
        f"\n  extern __shared__ __attribute__((aligned(16))) unsigned char h_dynamic_shared[];"
        f" {param.ctype} *{param.name} = ({param.ctype} *)h_dynamic_shared;"
    )
    return [(start, function.params_span[1], ""), (function.body_span[0] + 1, function.body_span[0] + 1, declare)]


def _scratch_param(text: str, function: Function) -> tuple[int, int, str]:
    """The scratch as a kernel's last parameter (after its dynamic local one) or a helper's first."""
    start, end = function.params_span
    param = f"__local ulong *{SCRATCH}"
    if text[start:end].strip() in ("", "void"):
        return start, end, param
    return (end, end, f", {param}") if function.is_kernel else (start, start, f"{param}, ")


def _scratch_arguments(source: KernelSource, toks: list[Token]) -> list[tuple[int, int, str]]:
    """Each call of a helper that shuffles passes the scratch buffer first."""
    shufflers = {f.name for f in source.functions.values() if not f.is_kernel and source.shuffles(f.name)}
    if not shufflers:
        return []
    bodies = [f.body_span for f in source.functions.values()]
    edits = []
    for k, t in enumerate(toks[:-2]):
        if t.text in shufflers and toks[k + 1].text == "(" and any(a <= t.start < b for a, b in bodies):
            closes = toks[k + 2].text == ")"
            edits.append((toks[k + 1].end, toks[k + 1].end, SCRATCH if closes else f"{SCRATCH}, "))
    return edits


def c_launchers(source: KernelSource) -> str:
    """Per kernel, `int hk_<name>(grid, block, argv, local_bytes)`: the host entry the runtime calls.

    ``argv[i]`` is the i-th launch argument: a buffer's address, or the address of a scalar's value.
    """
    parts = []
    for name, kernel in source.kernels.items():
        fields = "".join(
            f" {p.ctype} {'*' if p.kind == 'buffer' else ''}a{i};" for i, p in enumerate(kernel.launch_params)
        )
        unpack = " ".join(
            f"a.a{i} = ({p.ctype} *)argv[{i}];" if p.kind == "buffer" else f"a.a{i} = *({p.ctype} *)argv[{i}];"
            for i, p in enumerate(kernel.launch_params)
        )
        passed = [f"a->a{i}" for i in range(len(kernel.launch_params))]
        if kernel.local_param is not None:
            passed.append(f"({kernel.local_param.ctype} *)h_dynamic")
        parts.append(
            f"typedef struct {{{fields or ' char unused;'} }} hk_args_{name};\n"
            + _runner(f"hk_run_{name}", f"hk_args_{name}", f"{name}({', '.join(passed)})", source.synchronises(name))
            + f"int hk_{name}(const long *grid, const long *block, void **argv, long local_bytes) {{\n"
            f"  hk_args_{name} a; {unpack}\n"
            f"  return h_run(grid, block, local_bytes, {_runner_args(f'hk_run_{name}', source.synchronises(name))}, &a);\n}}\n"
        )
    return "\n".join(parts)


def _runner(name: str, args_type: str, call: str, synchronises: bool) -> str:
    """The function h_run calls: once per work-item as a fiber where the kernel synchronises, else once per
    work-group, looping over its items."""
    body = f"{call};" if synchronises else f"H_EACH_ITEM({call});"
    return f"static void {name}(void *p) {{ {args_type} *a = p; {body} }}\n"


def _runner_args(name: str, synchronises: bool) -> str:
    """h_run's `item` and `group` arguments."""
    return f"{name}, 0" if synchronises else f"0, {name}"


# ---- a custom op's grid kernel inside a model: one custom-kernel template per dialect ----------

PARAMS_HEAD = 6  # a model launch's params: grid[3], block[3], then the scalars


def model_template(source: KernelSource, entry: str, dialect: str) -> str:
    """The `render` template of the kernel `entry` as a model's custom kernel in `dialect`.

    The template defines ``$name`` with the signature custom kernels have in the dialect (the launch's
    params ``p``, then the node's buffers); the scalars come from ``p``. The other kernels of the
    source are left out, and its helpers are renamed ``${name}_<helper>`` so that two ops' helpers
    never meet.
    """
    kernel = source.kernel(entry)
    text = source.text
    edits = [e for e in _dialect_edits(source, dialect, kernel_scratch=False) if not _in_other_kernel(e, source, entry)]
    for function in source.functions.values():
        if function.is_kernel and function.name != entry:
            edits.append((function.start, function.body_span[1], ""))
    helpers = {f.name for f in source.functions.values() if not f.is_kernel}
    for t in tokens(text):
        if t.text in helpers:
            edits.append((t.start, t.end, f"${{name}}_{t.text}"))
        elif t.text == entry and t.start < kernel.params_span[0]:
            edits.append((t.start, t.end, "${name}_kernel" if dialect == "c" else "$name"))
    if dialect != "c":
        edits += _device_entry(source, kernel, dialect)
    template = _apply(text, edits, escape=True)
    return template + (_host_entry(source, kernel) if dialect == "c" else "")


def _dialect_edits(source: KernelSource, dialect: str, kernel_scratch: bool) -> list[tuple[int, int, str]]:
    """The edits every use of the source makes in `dialect`: local memory, and in OpenCL the shuffles' scratch
    (a parameter of each function that shuffles; of kernels only with `kernel_scratch`, else they declare it)."""
    toks = tokens(source.text)
    edits: list[tuple[int, int, str]] = []
    for function in source.functions.values():
        edits += _local_edits(toks, function, dialect)
        if dialect == "opencl" and source.shuffles(function.name) and (kernel_scratch or not function.is_kernel):
            edits.append(_scratch_param(source.text, function))
    if dialect == "opencl":
        edits += _scratch_arguments(source, toks)
    return edits


def _in_other_kernel(edit: tuple[int, int, str], source: KernelSource, entry: str) -> bool:
    return any(
        f.is_kernel and f.name != entry and f.start <= edit[0] < f.body_span[1] for f in source.functions.values()
    )


def _scalar_reads(kernel: Function, params: str, to_double: str) -> str:
    reads = []
    for k, param in enumerate(p for p in kernel.params if p.kind == "scalar"):
        value = f"{params}[{PARAMS_HEAD + k}]"
        if param.ctype in ("float", "double"):
            value = f"{to_double}({value})"
        reads.append(f"const {param.ctype} {param.name} = ({param.ctype})({value});")
    return " ".join(reads)


def _device_entry(source: KernelSource, kernel: Function, dialect: str) -> list[tuple[int, int, str]]:
    buffers = ", ".join(
        f"__global {'const ' if p.const else ''}{p.ctype} *{p.name}" for p in kernel.params if p.kind == "buffer"
    )
    head = f"\n  __global const long *h_p = P + poff; {_scalar_reads(kernel, 'h_p', 'as_double')}"
    if dialect == "opencl" and source.shuffles(kernel.name):
        head += f" __local ulong {SCRATCH}[1024];"
    opening = kernel.body_span[0] + 1
    return [
        (kernel.params_span[0], kernel.params_span[1], f"__global const long *P, const long poff, {buffers}"),
        (opening, opening, head),
    ]


def _host_entry(source: KernelSource, kernel: Function) -> str:
    """`$name(p, buffers)`: runs the renamed kernel over the launch's grid, as fibers where it synchronises."""
    params = kernel.params
    fields = " ".join(f"{p.ctype} {'*' if p.kind == 'buffer' else ''}a{i};" for i, p in enumerate(params))
    buffers = [i for i, p in enumerate(params) if p.kind == "buffer"]
    signature = ", ".join(f"void *b{i}" for i in buffers)
    scalars = [(i, p) for i, p in enumerate(params) if p.kind == "scalar"]
    unpack = " ".join(f"a.a{i} = b{i};" for i in buffers)
    for k, (i, p) in enumerate(scalars):
        value = f"p[{PARAMS_HEAD + k}]"
        unpack += f" a.a{i} = ({p.ctype})({'H_F64_OF(' + value + ')' if p.ctype in ('float', 'double') else value});"
    call = ", ".join(f"a->a{i}" for i in range(len(params)))
    synchronises = source.synchronises(kernel.name)
    return (
        f"\ntypedef struct {{ {fields or 'char unused;'} }} ${{name}}_args;\n"
        + _runner("${name}_run", "${name}_args", f"${{name}}_kernel({call})", synchronises)
        + f"static void $name(const i64 *p, {signature}$extra) {{\n"
        f"  ${{name}}_args a; {unpack}\n"
        "  const long grid[3] = {p[0], p[1], p[2]}, block[3] = {p[3], p[4], p[5]};\n"
        f"  h_run(grid, block, 0, {_runner_args('${name}_run', synchronises)}, &a);\n}}\n"
    )
