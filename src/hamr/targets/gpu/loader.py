"""Which binary of a GPU variant a device loads, and loading it: shipped code for its architecture, else code
this machine builds now from the regenerated source, else one error naming what the file carries."""

from __future__ import annotations

import logging

import onnx_ir as ir

from hamr.errors import HamrError
from hamr.targets.gpu.program import DeviceApi, GpuProgram
from hamr.targets.gpu.triton import variant as triton_variant

log = logging.getLogger(__name__)


def device_index(device: str, prefix: str) -> int:
    head, _, index = device.partition(":")
    if head != prefix or not index.isdigit():
        raise HamrError(f"'{device}' is not a {prefix} device id ({prefix}:0, {prefix}:1, ...)")
    return int(index)


def load(target, model: ir.Model, variant: dict, device: str, api: DeviceApi, arch: str) -> GpuProgram:
    """A program of `variant` on `api`'s device, whose architecture is `arch`."""
    lowered, source, same = target.regenerated(model, variant)
    files = variant.get("files", {}) if same else {}
    image = target.shipped_image(files, arch)
    if image is None:
        if not target.builder.available():
            carried = ", ".join(sorted(files)) or "no binaries this process may load"
            raise HamrError(
                f"{target.name}: nothing here runs on {device} ({arch}): the file carries {carried}, "
                f"and building for {arch} needs its compiler: {target.builder.EXTRA}"
            )
        log.info("%s: building the kernels for %s from the regenerated source", target.name, arch)
        image = target.builder.build(source, arch)
    called = target.rendered(model)[2]
    module = api.load_module(image) if called else None
    triton = triton_variant.loaded(target, lowered, variant, files, arch, api)
    return GpuProgram(model, lowered, api, module, called, device, target.renderer, triton)
