"""The pool's device drivers: cpu and opencl on this machine, nvidia and amd against hand-written scripts, plugins.

tests/data/drivers/ holds scripts of what NVML (2x H100) and AMD SMI (1x MI300X) would answer, written by
hand from the vendors' documented formats and values, not captured on a machine (each file's `provenance`
says so). `Replay` stands in for `pynvml` / `amdsmi` with exactly the functions a script answers, raising
the library's own error types and codes where the script says so. Every expected value is computed here
from the script, /proc or pyopencl, never from what a driver produced."""

from __future__ import annotations

import collections
import enum
import hashlib
import importlib.metadata
import json
import logging
import os
import sys
import types
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from hamr.pool.drivers import HEALTHY, DeviceReport, discover, discover_all, is_driver, load_drivers, loader
from hamr.pool.drivers.amd import AmdDriver
from hamr.pool.drivers.cpu import CpuDriver
from hamr.pool.drivers.nvidia import NvidiaDriver
from hamr.pool.drivers.opencl import OpenclDriver, device_uuid, pci_bus_id
from tests.helpers import installed_plugin

DATA = Path(__file__).parents[2] / "data" / "drivers"
PLUGIN = Path(__file__).parents[2] / "plugins" / "hamr_testdriver"
BUILTIN = {"cpu", "opencl", "nvidia", "amd"}
REPORT_FIELDS = (
    "uuid",
    "driver",
    "vendor",
    "kind",
    "architecture",
    "memory_total",
    "memory_free",
    "compute_units",
    "health",
    "targets",
    "local_id",
)


def script(name: str) -> dict:
    """A hand-written script of a vendor library's answers (tests/data/drivers)."""
    return json.loads((DATA / name).read_text())


def host_uuid(prefix: str, *parts: str) -> str:
    """The documented recipe (docs/pool.md): prefix-, then the first 128 bits of sha256 of the parts joined by NUL."""
    return f"{prefix}-{uuidlib.UUID(hex=hashlib.sha256(chr(0).join(parts).encode()).hexdigest()[:32])}"


def machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        if os.path.exists(path) and open(path).read().strip():
            return open(path).read().strip()
    pytest.skip("this host has no machine id")


def assert_fields(report: DeviceReport, expected: dict) -> None:
    got = report.to_json()
    for key, value in expected.items():
        if key == "details":
            for name, detail in value.items():
                assert got["details"].get(name) == detail, f"{report.local_id}: details[{name!r}]"
        else:
            assert got[key] == value, f"{report.local_id}: {key}"


# -- the replay: a vendor library answering from a script ------------------------------------------


@dataclass(frozen=True)
class Handle:
    index: int


def decode(value):
    """A scripted value as the library returns it: {"struct": ...} has attributes, {"bytes": ...} is bytes."""
    if isinstance(value, dict) and set(value) == {"struct"}:
        return types.SimpleNamespace(**{k: decode(v) for k, v in value["struct"].items()})
    if isinstance(value, dict) and set(value) == {"bytes"}:
        return value["bytes"].encode()
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


class Replay:
    """A module standing in for a vendor library, with exactly the functions its script answers.

    Answers are looked up when called, so a test may edit `script` after installing the module.
    `called` counts the calls by function name.
    """

    def __init__(self, name: str, scripted: dict, error):
        self.name, self.script, self.error = name, scripted, error
        self.called: collections.Counter[str] = collections.Counter()

    def functions(self) -> set[str]:
        device = {fn for dev in self.script["devices"] for fn in dev}
        return set(self.script["calls"]) | device | {self.script["handles"]["call"]}

    def _answer(self, fn: str, entry: dict, args: tuple):
        self.called[fn] += 1
        if "by_args" in entry:
            key = ",".join(a.name if isinstance(a, enum.Enum) else str(a) for a in args)
            assert key in entry["by_args"], f"{fn}: the script has no answer for arguments {key!r}"
            entry = entry["by_args"][key]
        if "error" in entry:
            error = self.script["errors"][entry["error"]]
            raise self.error(error["code"], error["text"])
        return decode(entry["return"])

    def _function(self, fn: str):
        handles = self.script["handles"]
        if fn == handles["call"] and handles["by"] == "index":

            def call(index):
                entry = self.script["devices"][index].get(fn)
                if entry is not None:
                    self._answer(fn, entry, ())
                else:
                    self.called[fn] += 1
                return Handle(index)
        elif fn == handles["call"]:

            def call():
                self.called[fn] += 1
                return [Handle(i) for i in range(len(self.script["devices"]))]
        elif fn in self.script["calls"]:

            def call(*args):
                return self._answer(fn, self.script["calls"][fn], args)
        else:

            def call(handle, *args):
                assert isinstance(handle, Handle), f"{fn} takes a device handle first, not {handle!r}"
                entry = self.script["devices"][handle.index].get(fn)
                assert entry is not None, f"{fn}: the script of device {handle.index} has no answer"
                return self._answer(fn, entry, args)

        call.__name__ = call.__qualname__ = fn
        return call

    def module(self, **extra) -> types.ModuleType:
        module = types.ModuleType(self.name)
        module.__dict__.update(self.script.get("constants", {}))
        for name, members in self.script.get("enums", {}).items():
            setattr(module, name, enum.IntEnum(name, members))
        for name, constants in self.script.get("submodules", {}).items():
            setattr(module, name, types.SimpleNamespace(**constants))
        for fn in self.functions():
            setattr(module, fn, self._function(fn))
        module.__dict__.update(extra)
        return module


class NVMLError(Exception):
    """pynvml's error: the code in `value`, its text as str()."""

    def __init__(self, value: int, text: str):
        super().__init__(value)
        self.value, self.text = value, text

    def __str__(self):
        return self.text


class AmdSmiException(Exception):
    pass


class AmdSmiLibraryException(AmdSmiException):
    """amdsmi's error: `err_code`, `err_info`, and a str() on two lines as the real one prints."""

    def __init__(self, err_code: int, err_info: str):
        super().__init__(err_code)
        self.err_code, self.err_info = err_code, err_info

    def get_error_code(self):
        return self.err_code

    def get_error_info(self, detailed=True):
        return self.err_info if detailed else self.err_info.split(" - ")[0]

    def __str__(self):
        return f"Error code:\n\t{self.err_code} | {self.err_info}"


@pytest.fixture
def nvml(monkeypatch) -> Replay:
    replay = Replay("pynvml", script("nvml-2xH100.json"), NVMLError)
    monkeypatch.setitem(sys.modules, "pynvml", replay.module(NVMLError=NVMLError))
    return replay


@pytest.fixture
def amdsmi(monkeypatch) -> Replay:
    replay = Replay("amdsmi", script("amdsmi-1xMI300X.json"), AmdSmiLibraryException)
    module = replay.module(AmdSmiException=AmdSmiException, AmdSmiLibraryException=AmdSmiLibraryException)
    monkeypatch.setitem(sys.modules, "amdsmi", module)
    return replay


# -- what the scripts say, computed from them -------------------------------------------------------


def expected_nvidia(rec: dict) -> list[dict]:
    found = []
    for index, (dev, facts) in enumerate(zip(rec["devices"], rec["facts"])):
        memory = dev["nvmlDeviceGetMemoryInfo"]["return"]["struct"]
        major, minor = dev["nvmlDeviceGetCudaComputeCapability"]["return"]
        rates = dev["nvmlDeviceGetUtilizationRates"]["return"]["struct"]
        uncorrected = dev["nvmlDeviceGetTotalEccErrors"]["by_args"]["1,0"]["return"]
        _, _, pending, failure = dev["nvmlDeviceGetRemappedRows"]["return"]
        health = "unhealthy" if uncorrected or failure else "degraded" if pending else "healthy"
        found.append(
            {
                "uuid": dev["nvmlDeviceGetUUID"]["return"],
                "driver": "nvidia",
                "vendor": "NVIDIA",
                "kind": "gpu",
                "architecture": f"sm_{major}{minor}",
                "memory_total": memory["total"],
                "memory_free": memory["free"],
                "compute_units": facts["sm_count"],
                "health": health,
                "targets": ["cuda"],
                "local_id": f"cuda:{index}",
                "details": {
                    "name": dev["nvmlDeviceGetName"]["return"],
                    "index": index,
                    "compute_capability": f"{major}.{minor}",
                    "cuda_cores": dev["nvmlDeviceGetNumGpuCores"]["return"],
                    "utilisation": rates["gpu"] / 100,
                    "memory_utilisation": rates["memory"] / 100,
                    "temperature_c": dev["nvmlDeviceGetTemperature"]["by_args"]["0"]["return"],
                    "pstate": f"P{dev['nvmlDeviceGetPerformanceState']['return']}",
                    "pci_bus_id": facts["pci_bus_id"],
                    "driver_version": rec["calls"]["nvmlSystemGetDriverVersion"]["return"],
                },
            }
        )
    return found


def expected_amd(rec: dict) -> list[dict]:
    found = []
    for index, (dev, facts) in enumerate(zip(rec["devices"], rec["facts"])):
        asic = dev["amdsmi_get_gpu_asic_info"]["return"]
        total = dev["amdsmi_get_gpu_memory_total"]["by_args"]["VRAM"]["return"]
        used = dev["amdsmi_get_gpu_memory_usage"]["by_args"]["VRAM"]["return"]
        ecc = dev["amdsmi_get_gpu_total_ecc_count"]["return"]
        pages = [p["status"] for p in dev["amdsmi_get_gpu_bad_page_info"]["return"]]
        health = "unhealthy" if ecc["uncorrectable_count"] or 2 in pages else "degraded" if 1 in pages else "healthy"
        activity = dev["amdsmi_get_gpu_activity"]["return"]
        edge = dev["amdsmi_get_temp_metric"]["by_args"]["EDGE,CURRENT"]
        assert asic["num_compute_units"] == facts["compute_units"]
        found.append(
            {
                "uuid": dev["amdsmi_get_gpu_device_uuid"]["return"],
                "driver": "amd",
                "vendor": "AMD",
                "kind": "gpu",
                "architecture": asic["target_graphics_version"],
                "memory_total": total,
                "memory_free": total - used,
                "compute_units": facts["compute_units"],
                "health": health,
                "targets": ["rocm"],
                "local_id": f"rocm:{index}",
                "details": {
                    "name": asic["market_name"],
                    "index": index,
                    "device_id": asic["device_id"],
                    "utilisation": activity["gfx_activity"] / 100,
                    "memory_utilisation": activity["umc_activity"] / 100,
                    "temperature_c": dev["amdsmi_get_temp_metric"]["by_args"]["HOTSPOT,CURRENT"]["return"],
                    "temperature_edge_c": edge.get("return"),
                    "pci_bus_id": facts["pci_bus_id"],
                    "driver_version": dev["amdsmi_get_gpu_driver_info"]["return"]["driver_version"],
                },
            }
        )
    return found


# -- nvidia (NVML), against the script ----------------------------------------------------------------


def test_nvidia_reports_match_the_script_field_by_field(nvml):
    driver = NvidiaDriver()
    assert driver.present() == (True, "")
    reports = driver.discover()
    expected = expected_nvidia(nvml.script)
    assert [r.local_id for r in reports] == [e["local_id"] for e in expected] == ["cuda:0", "cuda:1"]
    for report, want in zip(reports, expected):
        assert_fields(report, want)
    assert reports[0].details["health_reasons"] == []
    assert any("remapping" in r for r in reports[1].details["health_reasons"])  # cuda:1 has a row pending remap
    assert json.loads(json.dumps(reports[1].to_json()))["targets"] == ["cuda"]


def test_nvidia_asks_nvml_exactly_what_the_script_answers(nvml):
    NvidiaDriver().discover()
    assert set(nvml.called) == nvml.functions()
    assert nvml.called["nvmlInit"] == nvml.called["nvmlShutdown"] == 1


def test_nvidia_without_pynvml_is_not_present(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ModuleNotFoundError
    present, why = NvidiaDriver().present()
    assert not present and why.startswith("pynvml is not installed") and "hamr[gpu]" in why
    assert NvidiaDriver().discover() == []


@pytest.mark.parametrize(
    "error, text",
    [
        ("NVML_ERROR_DRIVER_NOT_LOADED", "Driver Not Loaded"),
        ("NVML_ERROR_LIBRARY_NOT_FOUND", "NVML Shared Library Not Found"),
    ],
)
def test_nvidia_whose_nvml_does_not_initialise_is_not_present(nvml, error, text):
    nvml.script["calls"]["nvmlInit"] = {"error": error}
    assert NvidiaDriver().present() == (False, f"NVML: {text}")
    assert NvidiaDriver().discover() == []


def test_nvidia_with_no_gpu_is_not_present(nvml):
    nvml.script["calls"]["nvmlDeviceGetCount"] = {"return": 0}
    assert NvidiaDriver().present() == (False, "NVML: no NVIDIA GPU")


def test_a_lost_gpu_whose_memory_cannot_be_read_is_unhealthy_and_the_other_is_unchanged(nvml):
    expected = expected_nvidia(nvml.script)
    nvml.script["devices"][1]["nvmlDeviceGetMemoryInfo"] = {"error": "NVML_ERROR_GPU_IS_LOST"}
    first, second = NvidiaDriver().discover()
    assert_fields(first, expected[0])
    assert_fields(second, {**expected[1], "memory_total": 0, "memory_free": None, "health": "unhealthy"})
    assert "nvmlDeviceGetMemoryInfo: GPU is lost" in second.details["health_reasons"]


def test_a_gpu_whose_uuid_cannot_be_read_is_skipped_with_a_warning(nvml, caplog):
    expected = expected_nvidia(nvml.script)
    nvml.script["devices"][0]["nvmlDeviceGetUUID"] = {"error": "NVML_ERROR_GPU_IS_LOST"}
    with caplog.at_level(logging.WARNING):
        reports = NvidiaDriver().discover()
    assert [r.local_id for r in reports] == ["cuda:1"]
    assert_fields(reports[0], expected[1])
    assert any("cuda:0 skipped" in m and "GPU is lost" in m for m in caplog.messages)


def test_a_failed_optional_query_degrades_and_not_supported_never_counts(nvml):
    nvml.script["devices"][0]["nvmlDeviceGetTemperature"]["by_args"]["0"] = {"error": "NVML_ERROR_UNKNOWN"}
    first = NvidiaDriver().discover()[0]
    assert first.health == "degraded" and first.details["temperature_c"] is None
    assert first.details["health_reasons"] == ["nvmlDeviceGetTemperature: Unknown Error"]
    # nvmlDeviceGetAttributes and nvmlDeviceGetRetiredPagesPendingStatus answer NOT_SUPPORTED on both GPUs
    assert nvml.script["devices"][0]["nvmlDeviceGetAttributes"] == {"error": "NVML_ERROR_NOT_SUPPORTED"}


@pytest.mark.parametrize(
    "ecc, rows, health",
    [
        (2, [0, 0, 0, 0], "unhealthy"),
        (0, [0, 1, 0, 1], "unhealthy"),
        (0, [0, 1, 1, 0], "degraded"),
        (0, [3, 0, 0, 0], "healthy"),
    ],
)
def test_nvidia_health_follows_ecc_and_row_remapping(nvml, ecc, rows, health):
    dev = nvml.script["devices"][0]
    dev["nvmlDeviceGetTotalEccErrors"]["by_args"]["1,0"] = {"return": ecc}
    dev["nvmlDeviceGetRemappedRows"] = {"return": rows}
    report = NvidiaDriver().discover()[0]
    assert report.health == health
    assert bool(report.details["health_reasons"]) == (health != "healthy")


def test_nvidia_takes_the_sm_count_from_attributes_where_nvml_answers_them(nvml):
    nvml.script["devices"][0]["nvmlDeviceGetAttributes"] = {"return": {"struct": {"multiprocessorCount": 114}}}
    assert [r.compute_units for r in NvidiaDriver().discover()] == [114, nvml.script["facts"][1]["sm_count"]]


def test_the_nvml_script_matches_the_real_pynvml_api():
    real = pytest.importorskip("pynvml", reason="pynvml is not installed (pip install 'hamr[gpu]')")
    rec = script("nvml-2xH100.json")
    replay = Replay("pynvml", rec, NVMLError)
    missing = sorted(fn for fn in replay.functions() if not callable(getattr(real, fn, None)))
    assert not missing, f"pynvml {getattr(real, '__version__', '')} lacks {missing}"
    for name, value in rec["constants"].items():
        assert getattr(real, name) == value, name
    for name, error in rec["errors"].items():
        assert getattr(real, name) == error["code"] and str(real.NVMLError(error["code"])) == error["text"], name


# -- amd (AMD SMI), against the script ------------------------------------------------------------------


def test_amd_reports_match_the_script_field_by_field(amdsmi):
    driver = AmdDriver()
    assert driver.present() == (True, "")
    reports = driver.discover()
    expected = expected_amd(amdsmi.script)
    assert len(reports) == len(expected) == 1
    assert_fields(reports[0], expected[0])
    assert reports[0].details["health_reasons"] == []  # the edge sensor MI300X lacks is "not supported"


def test_amd_asks_amdsmi_exactly_what_the_script_answers(amdsmi):
    AmdDriver().discover()
    assert set(amdsmi.called) == amdsmi.functions()


def test_amd_without_amdsmi_is_not_present(monkeypatch):
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    present, why = AmdDriver().present()
    assert not present and why.startswith("amdsmi is not installed")
    assert AmdDriver().discover() == []


def test_amd_whose_native_library_is_missing_is_not_present_and_prints_nothing(monkeypatch, tmp_path, capsys):
    # the PyPI wheel without ROCm: it prints, then fails with KeyError: 'libamd_smi.so'
    (tmp_path / "amdsmi.py").write_text(
        "print('Unable to find libamd_smi.so library')\n_libraries = {}\nsmi = _libraries['libamd_smi.so']\n"
    )
    monkeypatch.delitem(sys.modules, "amdsmi", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    present, why = AmdDriver().present()
    assert not present
    assert why == "amdsmi does not import: KeyError: 'libamd_smi.so' (it needs libamd_smi.so from ROCm's amd-smi-lib)"
    assert capsys.readouterr().out == ""
    sys.modules.pop("amdsmi", None)


def test_amd_whose_init_fails_is_not_present_in_one_line(amdsmi):
    amdsmi.script["calls"]["amdsmi_init"]["by_args"]["INIT_AMD_GPUS"] = {"error": "AMDSMI_STATUS_INIT_ERROR"}
    assert AmdDriver().present() == (False, "amdsmi: AMDSMI_STATUS_INIT_ERROR - Initialization error")
    assert AmdDriver().discover() == []


def test_an_amd_gpu_whose_asic_query_fails_is_unhealthy(amdsmi):
    expected = expected_amd(amdsmi.script)[0]
    amdsmi.script["devices"][0]["amdsmi_get_gpu_asic_info"] = {"error": "AMDSMI_STATUS_DRM_ERROR"}
    (report,) = AmdDriver().discover()
    assert_fields(
        report,
        {
            **expected,
            "architecture": "unknown",
            "compute_units": 0,
            "health": "unhealthy",
            "details": {**expected["details"], "name": None, "device_id": None},
        },
    )
    assert report.details["health_reasons"] == [
        "amdsmi_get_gpu_asic_info: AMDSMI_STATUS_DRM_ERROR - Error when called libdrm"
    ]


def test_an_amd_gpu_whose_uuid_cannot_be_read_is_skipped(amdsmi, caplog):
    amdsmi.script["devices"][0]["amdsmi_get_gpu_device_uuid"] = {"error": "AMDSMI_STATUS_NOT_FOUND"}
    with caplog.at_level(logging.WARNING):
        assert AmdDriver().discover() == []
    assert any("rocm:0 skipped" in m for m in caplog.messages)


def test_the_amdsmi_script_matches_the_real_amdsmi_api():
    real, why = AmdDriver().library()
    if real is None:
        pytest.skip(why)
    rec = script("amdsmi-1xMI300X.json")
    replay = Replay("amdsmi", rec, AmdSmiLibraryException)
    missing = sorted(fn for fn in replay.functions() if not callable(getattr(real, fn, None)))
    assert not missing, f"amdsmi lacks {missing}"
    for name, members in rec["enums"].items():
        assert {m: int(getattr(real, name)[m]) for m in members} == members, name
    for name, constants in rec["submodules"].items():
        assert {c: getattr(getattr(real, name), c) for c in constants} == constants, name
    for name, error in rec["errors"].items():
        assert getattr(real.amdsmi_wrapper, name) == error["code"], name
        assert real.AmdSmiLibraryException(error["code"]).err_info == error["text"], name


@pytest.mark.parametrize(
    "uncorrectable, pages, health",
    [(1, [], "unhealthy"), (0, [2], "unhealthy"), (0, [0, 1], "degraded"), (0, [0, 0], "healthy")],
)
def test_amd_health_follows_ecc_and_bad_pages(amdsmi, uncorrectable, pages, health):
    dev = amdsmi.script["devices"][0]
    dev["amdsmi_get_gpu_total_ecc_count"]["return"]["uncorrectable_count"] = uncorrectable
    dev["amdsmi_get_gpu_bad_page_info"] = {
        "return": [
            {"value": i, "page_address": 0x1000 * i, "page_size": 4096, "status": s} for i, s in enumerate(pages)
        ]
    }
    assert AmdDriver().discover()[0].health == health


# -- cpu and opencl, on this machine -------------------------------------------------------------------


def cpuinfo(key: str) -> str | None:
    with open("/proc/cpuinfo") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    return None


def test_the_cpu_driver_reports_this_host():
    assert CpuDriver().present() == (True, "")
    (report,) = CpuDriver().discover()
    model = cpuinfo("model name") or pytest.skip("/proc/cpuinfo names no model")
    flags = set((cpuinfo("flags") or "").split())
    assert_fields(
        report,
        {
            "uuid": host_uuid("cpu", machine_id(), model) if not os.environ.get("HAMR_HOST_ID") else report.uuid,
            "driver": "cpu",
            "kind": "cpu",
            "vendor": cpuinfo("vendor_id"),
            "memory_total": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
            "compute_units": len(os.sched_getaffinity(0)),
            "health": HEALTHY,
            "targets": ["cpu", "reference"],
            "local_id": "cpu",
            "details": {"name": model, "logical_cpus": os.cpu_count()},
        },
    )
    assert 0 < report.memory_free <= report.memory_total
    if "avx512f" in flags and "avx512bw" in flags:
        assert report.architecture == "x86-64-v4"
    elif {"avx2", "fma", "bmi2"} <= flags:
        assert report.architecture == "x86-64-v3"
    assert set(report.details["features"]) <= flags and ("avx2" in flags) == ("avx2" in report.details["features"])
    assert 0 <= report.details["utilisation"] <= 1
    assert CpuDriver().discover()[0].uuid == report.uuid  # stable


def test_the_cpu_uuid_follows_hamr_host_id(monkeypatch):
    monkeypatch.setenv("HAMR_HOST_ID", "rack7-node3")
    report = CpuDriver().discover()[0]
    assert report.uuid == host_uuid("cpu", "rack7-node3", report.details["name"])


def opencl_devices() -> list:
    try:
        import pyopencl as cl
    except Exception:
        return []
    found = []
    try:
        for platform in cl.get_platforms():
            found.extend(platform.get_devices())
    except Exception:
        return []
    return found


@pytest.mark.opencl
def test_the_opencl_driver_reports_every_device_as_pyopencl_sees_it(monkeypatch):
    import pyopencl as cl

    from hamr.runtime.devices import available_devices

    monkeypatch.delenv("HAMR_HOST_ID", raising=False)
    assert OpenclDriver().present() == (True, "")
    reports = OpenclDriver().discover()
    cl_devices = opencl_devices()
    assert len(reports) == len(cl_devices)
    for index, (report, dev) in enumerate(zip(reports, cl_devices)):
        kind = (
            "gpu"
            if dev.type & cl.device_type.GPU
            else "accelerator"
            if dev.type & cl.device_type.ACCELERATOR
            else "cpu"
        )
        expected = {
            "driver": "opencl",
            "kind": kind,
            "architecture": dev.name.strip(),
            "vendor": dev.vendor.strip(),
            "memory_total": dev.global_mem_size,
            "compute_units": dev.max_compute_units,
            "health": "healthy" if dev.available else "unhealthy",
            "targets": ["opencl"],
            "local_id": f"opencl:{index}",
            "details": {"platform": dev.platform.name.strip(), "driver_version": dev.driver_version.strip()},
        }
        if "attribute_query" not in dev.extensions:  # no PCI address: host, platform, name and index
            platform = dev.platform.name.strip()
            expected["uuid"] = host_uuid("opencl", machine_id(), platform, dev.name.strip(), str(index))
            expected["details"]["pci_bus_id"] = None
        assert_fields(report, expected)
    assert [r.local_id for r in reports] == [d.id for d in available_devices() if d.id.startswith("opencl:")]
    assert [r.uuid for r in OpenclDriver().discover()] == [r.uuid for r in reports]


class FakeClDevice:
    def __init__(self, extensions: str, answers: dict, name="GPU", platform="Vendor CL"):
        self.extensions, self.answers = extensions, answers
        self.name, self.platform = name, types.SimpleNamespace(name=platform)

    def get_info(self, param):
        if param not in self.answers:
            raise RuntimeError("clGetDeviceInfo failed: INVALID_VALUE")
        return self.answers[param]


def test_opencl_pci_addresses_from_the_nvidia_and_amd_extensions():
    import pyopencl as cl

    info = cl.device_info
    nvidia = FakeClDevice(
        "cl_khr_fp64 cl_nv_device_attribute_query", {info.PCI_BUS_ID_NV: 0x2A, info.PCI_SLOT_ID_NV: (3 << 3) | 1}
    )
    assert pci_bus_id(nvidia, cl) == "0000:2a:03.1"  # no PCI_DOMAIN_ID_NV on older drivers: domain 0
    nvidia.answers[info.PCI_DOMAIN_ID_NV] = 1
    assert pci_bus_id(nvidia, cl) == "0001:2a:03.1"
    topology = types.SimpleNamespace(bus=0x0C, device=0, function=0, type=1)
    amd = FakeClDevice("cl_amd_device_attribute_query", {info.TOPOLOGY_AMD: topology})
    assert pci_bus_id(amd, cl) == "0000:0c:00.0"
    assert pci_bus_id(FakeClDevice("cl_khr_fp64", {}), cl) is None
    assert pci_bus_id(FakeClDevice("cl_amd_device_attribute_query", {}), cl) is None  # listed, but fails
    # with an address the uuid follows the address, not the enumeration index
    assert (
        device_uuid(amd, cl, 0, "host")
        == device_uuid(amd, cl, 5, "host")
        == host_uuid("opencl", "host", "0000:0c:00.0")
    )


def test_opencl_without_pyopencl_is_not_present(monkeypatch):
    from hamr.targets.opencl import devices

    monkeypatch.setattr(devices, "pyopencl_module", lambda: None)
    assert OpenclDriver().present() == (False, "pyopencl does not import (pip install pyopencl)")
    assert OpenclDriver().discover() == []


# -- the loader: entry points, plugins, discovery that never crashes ---------------------------------------


def test_hamr_registers_its_four_drivers_as_entry_points():
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group=loader.ENTRY_POINT_GROUP)}
    assert BUILTIN <= set(eps), "reinstall hamr (pip install -e . --no-deps) so its entry points are registered"
    assert {eps[name].dist.name for name in BUILTIN} == {"hamr"}
    drivers = {d.name: d for d in load_drivers()}
    assert BUILTIN <= set(drivers) and all(is_driver(d) for d in drivers.values())
    assert isinstance(drivers["nvidia"], NvidiaDriver) and isinstance(drivers["amd"], AmdDriver)


def test_discovery_reports_every_driver_present_or_why_not(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    found = discover()
    status = {s.name: s for s in found.drivers}
    assert status["cpu"].state == "present" and status["cpu"].devices == 1
    assert status["nvidia"].state == "absent" and status["nvidia"].reason.startswith("pynvml is not installed")
    assert status["amd"].state == "absent" and status["amd"].reason.startswith("amdsmi is not installed")
    assert "(from hamr " in status["cpu"].source
    assert [d.local_id for d in found.devices if d.driver == "cpu"] == ["cpu"]
    assert json.loads(json.dumps(found.to_json()))["drivers"]
    assert [d.uuid for d in discover_all()] == [d.uuid for d in found.devices]


def test_discovery_through_the_entry_points_finds_the_scripted_gpus(nvml, amdsmi):
    found = discover()
    status = {s.name: s for s in found.drivers}
    assert (status["nvidia"].state, status["nvidia"].devices) == ("present", 2)
    assert (status["amd"].state, status["amd"].devices) == ("present", 1)
    gpus = [d for d in found.devices if d.kind == "gpu" and d.driver in ("nvidia", "amd")]
    expected = expected_amd(amdsmi.script) + expected_nvidia(nvml.script)  # drivers in entry point name order
    assert [g.uuid for g in gpus] == [e["uuid"] for e in expected]


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """pip-install tests/plugins/hamr_testdriver into a private folder and put it on sys.path."""
    with installed_plugin(PLUGIN, "hamr_testdriver", tmp_path_factory.mktemp("hamr_testdriver")) as site:
        yield site


def test_a_vendor_plugin_adds_its_npus_and_broken_plugins_are_reported_and_skipped(plugin_site, caplog):
    with caplog.at_level(logging.WARNING):
        found = discover()
    status = {s.name: s for s in found.drivers}
    npus = [d for d in found.devices if d.driver == "npu"]
    assert [(d.kind, d.local_id, d.vendor) for d in npus] == [("npu", f"npu:{i}", "ExampleChip") for i in range(2)]
    assert [d.memory_free for d in npus] == [32 * 2**30, 26 * 2**30]
    assert status["npu"].state == "present" and "(from hamr-testdriver 0.1.0)" in status["npu"].source
    broken = status["broken"]
    assert broken.state == "broken"
    assert broken.reason.startswith(
        "driver entry point 'broken = hamr_testdriver:no_such_driver' (from "
        "hamr-testdriver 0.1.0) of group 'hamr.drivers' failed to load: AttributeError"
    )
    assert status["notadriver"].state == "broken" and "gave dict; expected a Driver" in status["notadriver"].reason
    assert status["flaky"].state == "failed"
    assert status["flaky"].reason == "driver 'flaky': discover() raised RuntimeError: the flaky board stopped answering"
    for s in found.drivers:
        assert "\n" not in s.reason, s.name
    assert status["cpu"].state == "present"  # the others still report
    assert sum(broken.reason in m for m in caplog.messages) == 1
    assert any(status["flaky"].reason in m for m in caplog.messages)


def test_a_vendor_plugin_without_hardware_says_why(plugin_site, monkeypatch):
    monkeypatch.setenv("HAMR_TESTDRIVER_NPUS", "0")
    status = {s.name: s for s in discover().drivers}
    assert (status["npu"].state, status["npu"].reason) == ("absent", "no ExampleChip NPU (HAMR_TESTDRIVER_NPUS=0)")


class Fixed:
    """A driver answering what it is given."""

    def __init__(self, name, present=(True, ""), reports=(), fail=None):
        self.name, self._present, self._reports, self._fail = name, present, list(reports), fail

    def present(self):
        if self._fail == "present":
            raise OSError("device node vanished")
        return self._present

    def discover(self):
        return self._reports


def report(uuid: str, driver: str) -> DeviceReport:
    return DeviceReport(
        uuid=uuid,
        driver=driver,
        vendor="v",
        kind="npu",
        architecture="a",
        memory_total=1,
        memory_free=None,
        compute_units=1,
        local_id=f"{driver}:0",
    )


def test_discovery_survives_drivers_that_raise_answer_wrongly_or_repeat_a_uuid(caplog):
    drivers = [
        Fixed("a", reports=[report("u1", "a")]),
        Fixed("b", reports=[report("u1", "b"), report("u2", "b")]),
        Fixed("c", fail="present"),
        Fixed("d", present=(False, "")),
        Fixed("e", reports=["not a report"]),
    ]
    with caplog.at_level(logging.WARNING):
        found = discover(drivers)
    assert [(d.uuid, d.driver) for d in found.devices] == [("u1", "a"), ("u2", "b")]
    status = {s.name: (s.state, s.reason, s.devices) for s in found.drivers}
    assert status == {
        "a": ("present", "", 1),
        "b": ("present", "", 1),
        "c": ("failed", "driver 'c': present() raised OSError: device node vanished", 0),
        "d": ("absent", "not present", 0),
        "e": ("failed", "driver 'e': discover() gave str, not DeviceReport", 0),
    }
    assert any("b:0 skipped" in m and "'a' already reported uuid u1" in m for m in caplog.messages)


def test_entry_points_that_give_no_driver_or_a_driver_name_twice_are_broken(monkeypatch):
    group = loader.ENTRY_POINT_GROUP
    eps = [
        importlib.metadata.EntryPoint("cpu", "hamr.pool.drivers.cpu:CpuDriver", group),
        importlib.metadata.EntryPoint("cpu2", "hamr.pool.drivers.cpu:CpuDriver", group),
        importlib.metadata.EntryPoint("cls", "hamr.pool.drivers.base:DeviceReport", group),
        importlib.metadata.EntryPoint("gone", "hamr_no_such_module:Driver", group),
    ]
    monkeypatch.setattr(loader, "_entry_points", lambda: eps)
    assert [d.name for d in load_drivers()] == ["cpu"]
    status = {s.name: s for s in discover().drivers}
    assert status["cpu2"].reason == (
        "driver entry point 'cpu2 = hamr.pool.drivers.cpu:CpuDriver' gives driver 'cpu', "
        "which 'cpu = hamr.pool.drivers.cpu:CpuDriver' already gives"
    )
    assert "failed to load: TypeError" in status["cls"].reason  # a class whose call needs arguments
    assert "failed to load: ModuleNotFoundError: No module named 'hamr_no_such_module'" in status["gone"].reason
    assert {s.state for name, s in status.items() if name != "cpu"} == {"broken"}
