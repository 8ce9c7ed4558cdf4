"""NVIDIA GPUs through NVML (`pynvml`, from the nvidia-ml-py package: pip install 'hamr[gpu]'); target cuda.

tests/data/drivers/nvml-*.json record what NVML answers every call this driver makes.
"""

from __future__ import annotations

import logging

from hamr.pool.drivers.base import DeviceReport
from hamr.pool.drivers.common import LibraryDriver, Probe, import_library, opened, pci_address, text

log = logging.getLogger(__name__)

#: CUDA cores per streaming multiprocessor, by compute capability (major, minor); minor None: any
CORES_PER_SM = {
    (3, None): 192,
    (5, None): 128,
    (6, 0): 64,
    (6, None): 128,
    (7, None): 64,
    (8, 0): 64,
    (8, None): 128,
    (9, None): 128,
    (10, None): 128,
    (11, None): 128,
    (12, None): 128,
}


def sm_count(capability: tuple[int, int] | None, cores: int | None) -> int | None:
    """Streaming multiprocessors from the CUDA core count (NVML has no SM query for a whole GPU)."""
    if capability is None or not cores:
        return None
    major, minor = capability
    per_sm = CORES_PER_SM.get((major, minor)) or CORES_PER_SM.get((major, None))
    return cores // per_sm if per_sm else None


class NvidiaDriver(LibraryDriver):
    name, label, nothing = "nvidia", "NVML", "no NVIDIA GPU"

    def library(self):
        return import_library("pynvml", "pip install 'hamr[gpu]', which brings nvidia-ml-py")

    def session(self, nvml):
        return opened(nvml.nvmlInit, nvml.nvmlShutdown)

    def error(self, nvml):
        return nvml.NVMLError

    def count(self, nvml) -> int:
        return nvml.nvmlDeviceGetCount()

    def reports(self, nvml) -> list[DeviceReport | None]:
        try:
            driver_version = text(nvml.nvmlSystemGetDriverVersion())
        except nvml.NVMLError:
            driver_version = None
        return [_report(nvml, index, driver_version) for index in range(nvml.nvmlDeviceGetCount())]


def _report(nvml, index: int, driver_version: str | None) -> DeviceReport | None:
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        uuid = text(nvml.nvmlDeviceGetUUID(handle))
    except nvml.NVMLError as exc:  # nothing stable to report it under: skipped, and said
        log.warning("nvidia: cuda:%d skipped: its UUID cannot be read (NVML: %s)", index, exc)
        return None
    probe = Probe(nvml.NVMLError, lambda exc: exc.value == nvml.NVML_ERROR_NOT_SUPPORTED)
    name = probe.need(nvml.nvmlDeviceGetName, handle)
    memory = probe.need(nvml.nvmlDeviceGetMemoryInfo, handle)
    capability = probe.need(nvml.nvmlDeviceGetCudaComputeCapability, handle)
    capability = tuple(capability) if capability is not None else None
    attributes = probe.ask(nvml.nvmlDeviceGetAttributes, handle)  # NVML answers it for MIG devices only
    cores = probe.ask(nvml.nvmlDeviceGetNumGpuCores, handle)
    sms = attributes.multiprocessorCount if attributes is not None else sm_count(capability, cores)
    rates = probe.ask(nvml.nvmlDeviceGetUtilizationRates, handle)
    temperature = probe.ask(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)
    pstate = probe.ask(nvml.nvmlDeviceGetPerformanceState, handle)
    pci = probe.ask(nvml.nvmlDeviceGetPciInfo, handle)
    uncorrected = probe.ask(
        nvml.nvmlDeviceGetTotalEccErrors, handle, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC
    )
    remapped = probe.ask(nvml.nvmlDeviceGetRemappedRows, handle)  # Ampere and newer
    pages_pending = probe.ask(nvml.nvmlDeviceGetRetiredPagesPendingStatus, handle)  # before Ampere
    if uncorrected:
        probe.unhealthy.append(f"{uncorrected} uncorrectable ECC error(s) since the driver loaded")
    if remapped is not None and remapped[3]:
        probe.unhealthy.append("row remapping failed: the GPU cannot repair its memory")
    if remapped is not None and remapped[2]:
        probe.degraded.append("rows are pending remapping (reset the GPU to apply)")
    if pages_pending == nvml.NVML_FEATURE_ENABLED:
        probe.degraded.append("pages are pending retirement (reset the GPU to apply)")
    return DeviceReport(
        uuid=uuid,
        driver="nvidia",
        vendor="NVIDIA",
        kind="gpu",
        architecture=f"sm_{capability[0]}{capability[1]}" if capability else "unknown",
        memory_total=int(memory.total) if memory is not None else 0,
        memory_free=int(memory.free) if memory is not None else None,
        compute_units=sms or 0,
        health=probe.health,
        targets=("cuda",),
        local_id=f"cuda:{index}",
        details={
            "name": text(name) if name is not None else None,
            "index": index,
            "compute_capability": f"{capability[0]}.{capability[1]}" if capability else None,
            "cuda_cores": cores,
            "utilisation": rates.gpu / 100 if rates is not None else None,
            "memory_utilisation": rates.memory / 100 if rates is not None else None,
            "temperature_c": temperature,
            "pstate": f"P{pstate}" if pstate is not None and pstate < 16 else None,  # 32: unknown
            "pci_bus_id": pci_address(pci.busId) if pci is not None else None,
            "driver_version": driver_version,
            "health_reasons": probe.reasons,
        },
    )
