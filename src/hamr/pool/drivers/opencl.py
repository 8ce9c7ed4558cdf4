"""OpenCL devices through pyopencl (target opencl), numbered as `hamr devices` and a Session number them."""

from __future__ import annotations

from hamr.pool.drivers.base import HEALTHY, UNHEALTHY, DeviceReport
from hamr.pool.drivers.common import hashed_id, host_id


def pci_bus_id(device, cl) -> str | None:
    """The device's PCI address from the NVIDIA or AMD attribute-query extension, where it has one."""
    extensions = set(str(device.extensions).split())
    info = cl.device_info
    try:
        if "cl_nv_device_attribute_query" in extensions:
            bus, slot = device.get_info(info.PCI_BUS_ID_NV), device.get_info(info.PCI_SLOT_ID_NV)
            try:
                domain = device.get_info(info.PCI_DOMAIN_ID_NV)  # newer NVIDIA drivers only
            except Exception:
                domain = 0
            return f"{domain:04x}:{bus:02x}:{slot >> 3:02x}.{slot & 7:x}"
        if "cl_amd_device_attribute_query" in extensions:
            topology = device.get_info(info.TOPOLOGY_AMD)
            return f"0000:{topology.bus:02x}:{topology.device:02x}.{topology.function:x}"
    except Exception:  # the extension is listed but the query fails: no address, not an error
        return None
    return None


def device_uuid(device, cl, index: int, host: str) -> str:
    """Stable per host: from the PCI address where there is one, else from platform, name and index."""
    address = pci_bus_id(device, cl)
    if address is not None:
        return hashed_id("opencl", host, address)
    return hashed_id("opencl", host, device.platform.name.strip(), device.name.strip(), str(index))


class OpenclDriver:
    name = "opencl"

    def present(self) -> tuple[bool, str]:
        from hamr.targets.opencl.devices import cl_devices, pyopencl_module

        cl = pyopencl_module()
        if cl is None:
            return False, "pyopencl does not import (pip install pyopencl)"
        if cl_devices():
            return True, ""
        try:
            platforms = cl.get_platforms()
        except Exception:  # the ICD loader found no platform
            return False, "no OpenCL platform (install an ICD, e.g. pip install pocl-binary-distribution)"
        names = ", ".join(p.name.strip() for p in platforms) or "none"
        return False, f"no OpenCL device on the platforms present ({names})"

    def discover(self) -> list[DeviceReport]:
        from hamr.runtime.devices import memory_available, opencl_devices
        from hamr.targets.opencl.devices import cl_devices, pyopencl_module

        cl = pyopencl_module()
        if cl is None:
            return []
        host = host_id()
        reports = []
        # opencl_devices() walks cl_devices() in the same order: index N is opencl:N in both
        for index, (seen, device) in enumerate(zip(opencl_devices(memory_available()), cl_devices())):
            available = bool(device.available)
            reports.append(
                DeviceReport(
                    uuid=device_uuid(device, cl, index, host),
                    driver=self.name,
                    vendor=seen.vendor,
                    kind=seen.kind,
                    architecture=seen.architecture,
                    memory_total=seen.memory_total or 0,
                    memory_free=seen.memory_free,
                    compute_units=seen.compute_units,
                    health=HEALTHY if available else UNHEALTHY,
                    targets=seen.targets,
                    local_id=seen.id,
                    details={
                        "name": device.name.strip(),
                        "platform": device.platform.name.strip(),
                        "driver_version": device.driver_version.strip(),
                        "opencl_version": device.version.strip(),
                        "pci_bus_id": pci_bus_id(device, cl),
                        "utilisation": None,  # OpenCL has no utilisation query
                        "health_reasons": [] if available else ["CL_DEVICE_AVAILABLE is false"],
                    },
                )
            )
        return reports
