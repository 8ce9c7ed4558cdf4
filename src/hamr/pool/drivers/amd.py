"""AMD GPUs through AMD SMI (`amdsmi`, ROCm's Python bindings: pip install 'hamr[gpu]'); target rocm.

The `amdsmi` wheel on PyPI is the Python part only: it loads libamd_smi.so from ROCm
(amd-smi-lib) when imported, and fails to import without it. tests/data/drivers/amdsmi-*.json
record what it answers every call this driver makes.
"""

from __future__ import annotations

import logging

from hamr.errors import first_line
from hamr.pool.drivers.base import DeviceReport
from hamr.pool.drivers.common import LibraryDriver, Probe, import_library, opened, pci_address, text

log = logging.getLogger(__name__)


def _describe(exc: BaseException) -> str:
    """amdsmi's errors print on several lines; their short form is one."""
    return getattr(exc, "err_info", None) or first_line(exc)


def _number(value) -> int | None:
    """amdsmi answers "N/A" where a counter is not available."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class AmdDriver(LibraryDriver):
    name, label, nothing = "amd", "amdsmi", "no AMD GPU"

    def library(self):
        return import_library(
            "amdsmi", "pip install 'hamr[gpu]'", "it needs libamd_smi.so from ROCm's amd-smi-lib", quiet=True
        )

    def session(self, smi):
        return opened(lambda: smi.amdsmi_init(smi.AmdSmiInitFlags.INIT_AMD_GPUS), smi.amdsmi_shut_down)

    def error(self, smi):
        return smi.AmdSmiException

    def describe(self, smi, exc):
        return _describe(exc)

    def count(self, smi) -> int:
        return len(smi.amdsmi_get_processor_handles())

    def reports(self, smi) -> list[DeviceReport | None]:
        return [_report(smi, index, handle) for index, handle in enumerate(smi.amdsmi_get_processor_handles())]


def _report(smi, index: int, handle) -> DeviceReport | None:
    try:
        uuid = text(smi.amdsmi_get_gpu_device_uuid(handle))
    except smi.AmdSmiException as exc:  # nothing stable to report it under: skipped, and said
        log.warning("amd: rocm:%d skipped: its UUID cannot be read (amdsmi: %s)", index, _describe(exc))
        return None
    not_supported = smi.amdsmi_wrapper.AMDSMI_STATUS_NOT_SUPPORTED
    probe = Probe(smi.AmdSmiException, lambda exc: getattr(exc, "err_code", None) == not_supported, _describe)
    sensor, metric, vram = smi.AmdSmiTemperatureType, smi.AmdSmiTemperatureMetric, smi.AmdSmiMemoryType.VRAM
    asic = probe.need(smi.amdsmi_get_gpu_asic_info, handle) or {}
    total = probe.need(smi.amdsmi_get_gpu_memory_total, handle, vram)
    used = probe.ask(smi.amdsmi_get_gpu_memory_usage, handle, vram)
    activity = probe.ask(smi.amdsmi_get_gpu_activity, handle) or {}
    hotspot = probe.ask(smi.amdsmi_get_temp_metric, handle, sensor.HOTSPOT, metric.CURRENT)  # junction
    edge = probe.ask(smi.amdsmi_get_temp_metric, handle, sensor.EDGE, metric.CURRENT)  # none on MI300
    bdf = probe.ask(smi.amdsmi_get_gpu_device_bdf, handle)
    driver = probe.ask(smi.amdsmi_get_gpu_driver_info, handle) or {}
    ecc = probe.ask(smi.amdsmi_get_gpu_total_ecc_count, handle) or {}
    pages = probe.ask(smi.amdsmi_get_gpu_bad_page_info, handle) or []
    uncorrectable = _number(ecc.get("uncorrectable_count"))
    if uncorrectable:
        probe.unhealthy.append(f"{uncorrectable} uncorrectable ECC error(s) counted")
    statuses = [page.get("status") for page in pages]
    if statuses.count(smi.AmdSmiMemoryPageStatus.UNRESERVABLE):
        probe.unhealthy.append("bad memory pages could not be retired")
    if statuses.count(smi.AmdSmiMemoryPageStatus.PENDING):
        probe.degraded.append("bad memory pages are pending retirement (reset the GPU to apply)")
    gfx, umc = _number(activity.get("gfx_activity")), _number(activity.get("umc_activity"))
    return DeviceReport(
        uuid=uuid,
        driver="amd",
        vendor="AMD",
        kind="gpu",
        architecture=asic.get("target_graphics_version") or "unknown",
        memory_total=total or 0,
        memory_free=total - used if total is not None and used is not None else None,
        compute_units=_number(asic.get("num_compute_units")) or 0,
        health=probe.health,
        targets=("rocm",),
        local_id=f"rocm:{index}",
        details={
            "name": asic.get("market_name"),
            "index": index,
            "device_id": asic.get("device_id"),
            "utilisation": gfx / 100 if gfx is not None else None,
            "memory_utilisation": umc / 100 if umc is not None else None,
            "temperature_c": hotspot,
            "temperature_edge_c": edge,
            "pci_bus_id": pci_address(bdf) if bdf is not None else None,
            "driver_version": driver.get("driver_version"),
            "health_reasons": probe.reasons,
        },
    )
