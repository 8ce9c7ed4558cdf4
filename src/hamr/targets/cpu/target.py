"""The cpu target: generated C per fused kernel and one entry per segment, built with OpenMP."""

from __future__ import annotations

import ctypes
import logging
import os

import onnx_ir as ir

from hamr.targets.cpu import blas, build, isa
from hamr.targets.cpu.program import CpuProgram
from hamr.targets.native.render.c import CRenderer
from hamr.targets.native.target import NativeTarget

log = logging.getLogger(__name__)


def thread_count() -> int:
    from hamr.settings import settings

    return int(settings().num_threads or os.cpu_count() or 1)


class CpuTarget(NativeTarget):
    name = "cpu"
    devices = ("cpu",)
    renderer = CRenderer()

    def available(self) -> bool:
        return build.compiler() is not None

    def compile(self, model: ir.Model) -> dict:
        part, lowered = self.lower(model)
        source = self.source(lowered)
        levels = isa.build_levels()
        objects = build.build_many(source, levels)
        variant = self.describe(model, part, lowered, source)
        variant.update(
            machine=isa.machine(),
            levels=levels,
            compiler=build.compiler_identity(build.require_compiler()),
            flags={level: build.flags_for(level) for level in levels},
            files={"kernels.c": source.encode(), **{f"{level}.so": objects[level].read_bytes() for level in levels}},
        )
        return variant

    def load(self, model: ir.Model, variant: dict, device: str = "cpu") -> CpuProgram:
        lowered, source, same = self.regenerated(model, variant)
        files = variant.get("files", {}) if same else {}
        # OpenMP workers spin briefly before sleeping (libgomp reads this when first loaded). Left unset,
        # libgomp throttles the spin when it counts more threads than cores, and every one of a small model's
        # kernels then pays a futex wake-up (PP-OCR cls 7.6 ms against 3.3-4.5 spinning); 100000 spins measured
        # as fast as 1000000 on a quiet host and waste less of a busy one.
        os.environ.setdefault("GOMP_SPINCOUNT", "100000")
        path, level = self._object(variant, files, source)
        library = ctypes.CDLL(str(path))
        library.hamr_set_sgemm(ctypes.c_void_p(blas.sgemm_address()))
        library.hamr_set_threads(ctypes.c_int(thread_count()))
        blas.set_blas_threads(1)  # one thread pool: the generated code splits GEMMs across OpenMP threads
        return CpuProgram(model, lowered, library, device, micro_kernel=isa.has_avx512(level))

    def _object(self, variant: dict, files: dict, source: str):
        if variant.get("machine") == isa.machine():
            for level in isa.host_levels():
                data = files.get(f"{level}.so")
                if data is not None:
                    return build.cached_object(bytes(data)), level
        log.info("no prebuilt cpu object for %s; building from the stored C source", isa.machine())
        level = isa.host_levels()[0]
        return build.build_many(source, [level])[level], level
