"""A GPU variant's Triton kernels: built per architecture at compile time, chosen and loaded at load time.

The variant's `triton` entry records each kernel's spec, the launches it runs and, per architecture, the
launch metadata of its binary. The binaries (`hamr_t0.sm_90.cubin`, `hamr_t0.gfx942.hsaco`...) are native
code under the trust rule: a loader uses them only when the file's binaries are trusted and the specs it
regenerates from the graph are the recorded ones; otherwise it builds them here from the regenerated specs, or,
without triton, runs those launches on their dialect kernels.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from hamr.targets.gpu.program import DeviceApi
from hamr.targets.gpu.triton import aot
from hamr.targets.gpu.triton.specs import digest, launch_grid, specs_for
from hamr.targets.native.assemble import Lowered

log = logging.getLogger(__name__)


def enabled() -> bool:
    from hamr.settings import settings

    return (settings().triton or "").lower() != "off" and aot.available()


def compiled(lowered: Lowered, archs: list[str]) -> tuple[dict | None, dict[str, bytes]]:
    """The variant's `triton` entry and its binaries, or (None, {}) where no launch qualifies or triton is off."""
    specs = specs_for(lowered)
    if not specs:
        return None, {}
    if not enabled():
        _without_triton()
        return None, {}
    archs = generations(archs)
    jobs = [(spec, arch) for spec in specs for arch in archs]
    built = {(spec["name"], arch): aot.build(spec, arch) for spec, arch in jobs}
    files = {aot.file_name(spec, arch): built[spec["name"], arch][0] for spec, arch in jobs}
    kernels = [{**spec, "archs": {arch: built[spec["name"], arch][1] for arch in archs}} for spec in specs]
    return {"version": aot.version(), "specs_sha256": digest(specs), "kernels": kernels}, files


def generations(archs: list[str]) -> list[str]:
    """The architectures worth a Triton build: a cubin for sm_86 or sm_89 is left out where sm_80's is built, since a
    GPU runs a cubin of its own major version and an older minor (a Triton build takes 1-3 s and 150-400 KiB)."""
    kept = []
    for arch in archs:
        if arch.startswith("sm_") and arch[-1] != "0" and f"{arch[:-1]}0" in archs:
            continue
        kept.append(arch)
    return kept


@functools.cache
def _without_triton() -> None:
    from hamr.settings import settings

    if (settings().triton or "").lower() == "off":
        log.info("HAMR_TRITON=off: the GEMM and Conv anchors run the dialect kernels")
    else:
        log.warning("the GEMM and Conv anchors run the dialect kernels; for Triton's: %s", aot.EXTRA)


@dataclass(frozen=True)
class TritonFunction:
    """A loaded Triton kernel and how to launch it."""

    function: object
    spec: dict
    metadata: dict

    def grid(self, params: list[int]) -> tuple[int, int, int]:
        return launch_grid(self.spec, params)


def loaded(
    target, lowered: Lowered, variant: dict, files: dict, arch: str, api: DeviceApi
) -> dict[str, TritonFunction]:
    """Launch name -> the Triton kernel it runs on `api`'s device; launches left out run their dialect kernels."""
    specs = specs_for(lowered)
    if not specs:
        return {}
    entry = variant.get("triton") or {}
    recorded = {k["name"]: k for k in entry.get("kernels", [])} if entry.get("specs_sha256") == digest(specs) else {}
    out: dict[str, TritonFunction] = {}
    for spec in specs:
        image, metadata = _image(target, spec, recorded.get(spec["name"]), files, arch, api)
        if image is None:
            continue
        function = api.function(api.load_module(image), metadata["function"])
        if metadata["dynamic_shared_bytes"] > api.default_shared_limit:
            api.allow_shared(function, metadata["dynamic_shared_bytes"])
        for name in spec["launches"]:
            out[name] = TritonFunction(function, spec, metadata)
    return out


def _image(target, spec: dict, recorded: dict | None, files: dict, arch: str, api: DeviceApi):
    """The binary of `spec` this device runs and its metadata: shipped, else built here, else (None, None)."""
    if recorded is not None:
        prefix = spec["name"] + "."
        shipped = {
            name[len(prefix) :]: data
            for name, data in files.items()
            if name.startswith(prefix) and target.runs(recorded["archs"].get(_arch_of(name[len(prefix) :]), {}), api)
        }
        image = target.shipped_image(shipped, arch)
        if image is not None:
            chosen = next(name for name, data in shipped.items() if bytes(data) == image)
            return image, recorded["archs"][_arch_of(chosen)]
    if not enabled():
        log.info(
            "%s: %s runs on its dialect kernels (no Triton binary here for %s; %s)",
            target.name,
            spec["name"],
            arch,
            aot.EXTRA,
        )
        return None, None
    image, metadata = aot.build(spec, arch)
    if not target.runs(metadata, api):
        log.info(
            "%s: %s runs on its dialect kernels (the driver is older than its binary needs)", target.name, spec["name"]
        )
        return None, None
    return image, metadata


def _arch_of(file_name: str) -> str:
    return file_name.rsplit(".", 1)[0]
