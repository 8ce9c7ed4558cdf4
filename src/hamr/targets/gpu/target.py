"""A GPU target: the OpenCL C kernels under a GPU dialect header, built for each architecture named."""

from __future__ import annotations

import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor

import onnx_ir as ir

from hamr.ir.dtypes import buffer_ctype
from hamr.targets.gpu.triton import variant as triton_variant
from hamr.targets.native.assemble import Launch, Lowered
from hamr.targets.native.render.gpu import MAP_BLOCK, GpuRenderer
from hamr.targets.native.target import NativeTarget, loaded

log = logging.getLogger(__name__)
_GROUP_SIZE = re.compile(r"reqd_work_group_size\((\d+), (\d+), (\d+)\)")


class Builder:
    """A GPU compiler as a target uses it, from its module (cuda: `nvrtc`; rocm: `clang`), which defines
    `EXTRA` (what to install when it is missing), `available()`, `version()`, `archs()`, `file_name(arch)`
    and `build(source, arch)`."""

    def __init__(self, module):
        self.module = module
        self.EXTRA = module.EXTRA

    def available(self) -> bool:
        return self.module.available()

    def version(self) -> str:
        return self.module.version()

    def archs(self) -> list[str]:
        return self.module.archs()

    def file_name(self, arch: str) -> str:
        return self.module.file_name(arch)

    def build(self, source: str, arch: str) -> bytes:
        return self.module.build(source, arch)


class GpuTarget(NativeTarget):
    renderer: GpuRenderer
    builder: Builder
    source_file = ""  # the member holding the generated source (kernels.cu, kernels.hip)

    def available(self) -> bool:
        return self.builder.available()

    def compile(self, model: ir.Model) -> dict:
        part, lowered = self.lower(model)
        functions, called = self.renderer.functions(lowered)
        source = self.renderer.joined(functions, lowered)
        archs = self.builder.archs()
        binaries = build_all(self.builder, source, archs)
        variant = self.describe(model, part, lowered, source)
        triton, triton_files = triton_variant.compiled(lowered, archs)
        variant.update(
            archs=archs,
            compiler=self.compiler(),
            launches=launch_metadata(lowered, functions, called),
            triton=triton,
            files={
                self.source_file: source.encode(),
                **{self.builder.file_name(a): binaries[a] for a in archs},
                **triton_files,
            },
        )
        return variant

    def runs(self, metadata: dict, api) -> bool:
        """Whether `api`'s driver runs a binary with this launch metadata (a driver new enough for it)."""
        return True

    def compiler(self) -> dict:
        raise NotImplementedError

    def lowered_for_load(self, model: ir.Model) -> tuple[Lowered, str]:
        return self.rendered(model)[:2]

    def rendered(self, model: ir.Model) -> tuple[Lowered, str, dict[str, str]]:
        """A loaded model's lowering, source and launch name -> kernel function, rendered once per process."""

        def make():
            lowered = self.lower(model)[1]
            functions, called = self.renderer.functions(lowered)
            return lowered, self.renderer.joined(functions, lowered), called

        return loaded(model, (self.name, "rendered"), make)


def build_all(builder: Builder, source: str, archs: list[str]) -> dict[str, bytes]:
    """Every architecture's binary of `source`, built side by side."""
    with ThreadPoolExecutor(max(1, min(len(archs), os.cpu_count() or 1))) as pool:
        return dict(zip(archs, pool.map(lambda arch: builder.build(source, arch), archs)))


def launch_metadata(lowered: Lowered, functions: dict[str, str], called: dict[str, str]) -> list[dict]:
    """Per kernel function: its parameters in order (types and names) and its block size."""
    seen: dict[str, dict] = {}
    for segment in lowered.all_segments:
        for launch in segment.launches:
            name = called[launch.name]
            if name not in seen:
                seen[name] = {"name": name, "params": parameters(launch, lowered.dtypes), **block_of(functions[name])}
    return list(seen.values())


def parameters(launch: Launch, dtypes: dict[str, str]) -> list[dict]:
    """What a launch passes: the params table, the launch's offset in it, then its buffers."""
    k = launch.kernel
    params = [{"name": "P", "type": "const i64 *"}, {"name": "poff", "type": "i64"}]
    for kind, i in k.arg_order():
        ctype = buffer_ctype(dtypes[k.arg_value((kind, i))])
        params.append({"name": f"{kind}{i}", "type": f"const {ctype} *" if kind == "in" else f"{ctype} *"})
    return params


def block_of(text: str) -> dict:
    """The block a kernel's text fixes (reqd_work_group_size), or the one a map kernel is launched with."""
    match = _GROUP_SIZE.search(text)
    block = [int(g) for g in match.groups()] if match else [MAP_BLOCK, 1, 1]
    return {"block": block, "block_fixed": match is not None, "dynamic_shared_bytes": 0}
