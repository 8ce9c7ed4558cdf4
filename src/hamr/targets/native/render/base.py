"""What every native dialect renders alike, and the hooks a dialect fills in.

A :class:`Renderer` turns a :class:`~hamr.targets.native.assemble.Lowered` model into one
source text. It writes the prelude, then one function per launch:

- a *map* kernel (``Kernel.body``, one work item ``gid``) through :meth:`map_function`,
  which each dialect writes (a loop on the host, one work item per thread on a device);
- a *custom* kernel from ``Kernel.sources[dialect]``: a :func:`render` template filled with
  its values plus ``$name`` (the function name) and ``$extra`` (the extra buffer arguments of
  a fused epilogue), between the ``STORE`` macros of the epilogue.

A kernel without a source for this dialect is refused before it gets here: the
lowering's ``dialects(node)`` does not name the dialect, so ``NativeTarget.accepts`` vetoes
the node and it falls back to the reference with that reason.
"""

from __future__ import annotations

from hamr.ir.dtypes import buffer_ctype, ctype
from hamr.targets.native.assemble import Launch, Lowered, Segment
from hamr.targets.native.ops.base import Kernel, Source
from hamr.targets.native.render.template import render

LaunchRange = tuple[tuple[int, ...], tuple[int, ...] | None]


class Renderer:
    dialect: str = ""  # the language this renderer writes
    kernels_from: str = ""  # the key of Kernel.sources it reads, where not its own dialect (a GPU dialect: opencl)
    prelude: str = ""  # typedefs, macros and helpers before the first kernel
    buffer_qualifier: str = ""  # written before every buffer argument ("__global " in OpenCL C)
    host_loops: bool = False  # STORE_ALL / STORE_RANGE exist (a custom kernel may loop over a buffer)

    @property
    def kernel_dialect(self) -> str:
        """The dialect whose kernels this renderer writes out: lowerings choose their kernels for it."""
        return self.kernels_from or self.dialect

    # ---- the whole source --------------------------------------------------------------

    def preludes(self, lowered: Lowered) -> list[str]:
        """The dialect's prelude, then once each the preludes its custom kernels ask for (the portable form's)."""
        asked = [
            self.kernel_source(launch.kernel).prelude
            for segment in lowered.all_segments
            for launch in segment.launches
            if not launch.kernel.is_map
        ]
        return [self.prelude, *dict.fromkeys(p for p in asked if p)]

    def source(self, lowered: Lowered) -> str:
        parts = self.preludes(lowered)
        for segment in lowered.all_segments:
            parts += [self.function(launch, lowered.dtypes) for launch in segment.launches]
            parts += self.segment_entries(segment, lowered.dtypes)
        return "\n".join(parts)

    def segment_entries(self, segment: Segment, dtypes: dict[str, str]) -> list[str]:
        """Host functions after a segment's kernels (none where the runtime launches each kernel)."""
        return []

    # ---- one kernel ----------------------------------------------------------------------

    def function(self, launch: Launch, dtypes: dict[str, str]) -> str:
        return self.map_function(launch, dtypes) if launch.kernel.is_map else self.custom_function(launch, dtypes)

    def map_function(self, launch: Launch, dtypes: dict[str, str]) -> str:
        raise NotImplementedError

    def custom_function(self, launch: Launch, dtypes: dict[str, str]) -> str:
        k = launch.kernel
        source = self.kernel_source(k)
        extra = self.args(launch, dtypes, skip=k.own_args)
        define, undef = self.store_macros(launch, dtypes)
        text = render(source.template, name=launch.name, extra=", " + extra if extra else "", **source.values)
        return define + text + undef

    def kernel_source(self, kernel: Kernel) -> Source:
        """The custom kernel's source in this dialect (accepts() vetoed nodes without one)."""
        source = kernel.sources.get(self.dialect) or kernel.sources.get(self.kernel_dialect)
        if source is None:
            raise RuntimeError(f"kernel '{kernel.label}' has no {self.kernel_dialect} source")
        return source

    def args(self, launch: Launch, dtypes: dict[str, str], skip=(0, 0)) -> str:
        """Buffer parameters in signature order, leaving out those a custom source names itself."""
        qual = self.buffer_qualifier
        k = launch.kernel
        parts = []
        for kind, i in k.arg_order():
            if i < (skip[0] if kind == "in" else skip[1]):
                continue
            t = buffer_ctype(dtypes[k.arg_value((kind, i))])
            parts.append(f"{qual}const {t} *in{i}" if kind == "in" else f"{qual}{t} *out{i}")
        return ", ".join(parts)

    def store_macros(self, launch: Launch, dtypes: dict[str, str]) -> tuple[str, str]:
        """#define / #undef of STORE (and of STORE_ALL, STORE_RANGE where loops run on the host)."""
        k = launch.kernel
        acc_type = ctype(dtypes[k.outputs[0]])
        if launch.stores:
            store = (
                f"#define STORE(GID_, VAL_) do {{ const i64 gid = (GID_); const {acc_type} acc = (VAL_); "
                f"{launch.stores} }} while (0)\n"
            )
            store_all = (
                "#define STORE_ALL(N_, BUF_) do { const i64 ns_ = (N_); "
                '_Pragma("omp parallel for schedule(static) if(ns_ > PARALLEL_THRESHOLD)") '
                "for (i64 g_ = 0; g_ < ns_; g_++) STORE(g_, BUF_[g_]); } while (0)\n"
                "#define STORE_RANGE(S_, N_, BUF_) do { const i64 s_ = (S_), e_ = s_ + (N_); "
                "for (i64 g_ = s_; g_ < e_; g_++) STORE(g_, BUF_[g_]); } while (0)\n"
            )
        else:
            store = "#define STORE(GID_, VAL_) (out0[(GID_)] = (VAL_))\n"
            store_all = (
                "#define STORE_ALL(N_, BUF_) do { } while (0)\n#define STORE_RANGE(S_, N_, BUF_) do { } while (0)\n"
            )
        undef = "#undef STORE\n" + ("#undef STORE_ALL\n#undef STORE_RANGE\n" if self.host_loops else "")
        return store + (store_all if self.host_loops else ""), undef

    def portable(self, source) -> str:
        """A portable kernel source (hamr kernel C, ``hamr.ops.kernel_source.KernelSource``) in this dialect."""
        raise NotImplementedError

    # ---- launch --------------------------------------------------------------------------

    def launch_range(self, kernel: Kernel, params: list[int]) -> LaunchRange:
        """(global size, local size or None) of a kernel launched as a grid of work items."""
        if kernel.is_map:
            return (int(params[0]),), None
        source = self.kernel_source(kernel)
        if source.range is None:
            raise RuntimeError(f"kernel '{kernel.label}' has no {self.kernel_dialect} launch range")
        return source.range(params)
