"""OpenCL devices through pyopencl; absent drivers or libraries mean no devices, not errors."""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)


def pyopencl_module():
    """The pyopencl module, or None where it does not import (no ICD loader, no library)."""
    try:
        import pyopencl
    except Exception as exc:  # ImportError, or an ICD loader that fails to initialise
        log.debug("pyopencl unavailable: %s", exc)
        return None
    return pyopencl


@functools.lru_cache(maxsize=1)
def cl_devices() -> tuple:
    """Every OpenCL device of every platform, in a stable order (index = N of opencl:N)."""
    cl = pyopencl_module()
    if cl is None:
        return ()
    try:
        platforms = cl.get_platforms()
    except Exception as exc:  # no ICD, no platform
        log.debug("no OpenCL platform: %s", exc)
        return ()
    devices = []
    for platform in platforms:
        try:
            devices.extend(platform.get_devices())
        except Exception as exc:
            log.debug("OpenCL platform %s has no usable device: %s", platform.name, exc)
    return tuple(devices)


def device_kind(device) -> str:
    cl = pyopencl_module()
    if device.type & cl.device_type.GPU:
        return "gpu"
    if device.type & cl.device_type.ACCELERATOR:
        return "accelerator"
    return "cpu"


def get_device(device_id: str):
    from hamr.errors import HamrError
    from hamr.targets.opencl import pocl_workaround

    devices = cl_devices()
    try:
        device = devices[int(device_id.split(":", 1)[1])]
    except (IndexError, ValueError):
        present = ", ".join(f"opencl:{i}" for i in range(len(devices))) or "none"
        raise HamrError(f"OpenCL device '{device_id}' is not present (present: {present})") from None
    pocl_workaround.apply(device)
    return device
