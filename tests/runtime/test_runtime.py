"""The runtime API end to end on cpu and opencl: devices, policies, sessions, threads, state,
I/O binding, live migration, profiling and errors."""

from __future__ import annotations

import json
import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hamr
from hamr.runtime import measurements
from tests.helpers import DEVICES, U, W, hamr_cli, mlp_model, mlp_reference, native_targets, opencl_devices
from tests.helpers import model as _model

OPENCL0 = "opencl:0"  # the first OpenCL device, in the tests marked opencl
TOL = dict(rtol=1e-4, atol=1e-5)
RNG = np.random.default_rng(12)  # inputs


def rnn_model() -> onnx.ModelProto:
    """h' = tanh(x U + h W), y = 2 h': a recurrent cell whose hidden state is carried."""
    f = TensorProto.FLOAT
    return _model(
        [
            helper.make_node("MatMul", ["x", "U"], ["xu"]),
            helper.make_node("MatMul", ["h", "W"], ["hw"]),
            helper.make_node("Add", ["xu", "hw"], ["s"]),
            helper.make_node("Tanh", ["s"], ["h_next"]),
            helper.make_node("Mul", ["h_next", "two"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", f, ["batch", 4]), helper.make_tensor_value_info("h", f, ["batch", 8])],
        [helper.make_tensor_value_info("y", f, ["batch", 8]), helper.make_tensor_value_info("h_next", f, ["batch", 8])],
        [
            numpy_helper.from_array(U, "U"),
            numpy_helper.from_array(W, "W"),
            numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        ],
        "rnn",
    )


def rnn_reference(xs, h=None):
    h = np.zeros((xs[0].shape[0], 8), np.float32) if h is None else h
    ys = []
    for x in xs:
        h = np.tanh(x @ U + h @ W)
        ys.append(2 * h)
    return ys, h


def cache_model() -> onnx.ModelProto:
    """A KV-cache-like state: the cache grows by one row per call; y = sum of the cache rows."""
    f = TensorProto.FLOAT
    return _model(
        [
            helper.make_node("Concat", ["past", "x"], ["present"], axis=0),
            helper.make_node("ReduceSum", ["present", "axes"], ["y"], keepdims=0),
        ],
        [helper.make_tensor_value_info("past", f, ["past_len", 4]), helper.make_tensor_value_info("x", f, [1, 4])],
        [helper.make_tensor_value_info("y", f, [4]), helper.make_tensor_value_info("present", f, ["total", 4])],
        [numpy_helper.from_array(np.array([0], np.int64), "axes")],
        "cache",
    )


def reshape_model() -> onnx.ModelProto:
    """Reshape to a shape given at run time: a bad shape fails while planning, on the device."""
    return _model(
        [
            helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape_to_input"),
            helper.make_node("Relu", ["r"], ["y"]),
        ],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", "cols"])],
        [],
        "reshape",
    )


def only(exe, target: str) -> hamr.Executable:
    """The same executable with one variant."""
    return hamr.Executable(exe.model, exe.name, exe.signature, {target: exe.variants[target]}, source=exe.source)


def _targets():
    return native_targets() + ["reference"]


@pytest.fixture(scope="module")
def rnn_exe():
    return hamr.load(hamr.compile(rnn_model(), targets=_targets()).to_bytes())


@pytest.fixture(scope="module")
def mlp_exe():
    return hamr.load(hamr.compile(mlp_model(), targets=_targets()).to_bytes())


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HAMR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


# -- 1. devices --------------------------------------------------------------------------


def test_devices_report_what_each_has():
    found = hamr.devices()
    cpu = next(d for d in found if d.id == "cpu")
    assert cpu.kind == "cpu" and cpu.compute_units >= 1 and "cpu" in cpu.targets
    assert 0 < cpu.memory_free <= cpu.memory_total
    assert 0.0 <= cpu.utilisation <= 1.0
    for d in found:
        assert set(d.to_json()) >= {
            "id",
            "kind",
            "vendor",
            "architecture",
            "memory_total",
            "memory_free",
            "compute_units",
            "utilisation",
            "targets",
        }
        if d.id.startswith("opencl:"):
            assert d.targets == ("opencl",) and d.memory_total > 0


def test_an_absent_opencl_driver_means_no_devices_not_an_error(monkeypatch):
    from hamr.targets.opencl import devices as cl_devices

    class NoPlatform:
        def get_platforms(self):
            raise RuntimeError("clGetPlatformIDs failed: PLATFORM_NOT_FOUND_KHR")

    cl_devices.cl_devices.cache_clear()
    monkeypatch.setattr(cl_devices, "pyopencl_module", lambda: NoPlatform())
    try:
        assert [d.id for d in hamr.devices()] == ["cpu"]
        monkeypatch.setattr(cl_devices, "pyopencl_module", lambda: None)
        cl_devices.cl_devices.cache_clear()
        assert [d.id for d in hamr.devices()] == ["cpu"]
    finally:
        cl_devices.cl_devices.cache_clear()


# -- 2. compile and load ----------------------------------------------------------------


def test_compile_from_a_path_save_and_load(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp_model(), path)
    exe = hamr.compile(path, targets=["cpu"])
    saved = exe.save(tmp_path / "mlp.hamr")
    loaded = hamr.load(saved)
    assert loaded.targets == ["cpu"]
    x = RNG.standard_normal((3, 16)).astype(np.float32)
    np.testing.assert_allclose(hamr.Session(saved).run({"x": x})["y"], mlp_reference(x), **TOL)


# -- 3. sessions and policies ---------------------------------------------------------------


def test_prefer_accelerator_takes_the_most_preferred_device(mlp_exe):
    session = hamr.Session(mlp_exe, device="prefer_accelerator")
    expected = next(d for d in hamr.devices() if set(d.targets) & set(mlp_exe.targets))
    assert session.device.id == expected.id
    assert hamr.Session(mlp_exe, device="auto").device.id == expected.id


def test_prefer_accelerator_picks_a_gpu_kind_device_and_the_cpu_when_there_is_none(monkeypatch):
    from types import SimpleNamespace

    from hamr.runtime import devices, placement

    def device(id, kind):
        return devices.Device(id, kind, "Acme", "fake", 8, 1 << 30, ("opencl",))

    gpu, cl_cpu = device("opencl:1", "gpu"), device("opencl:0", "cpu")
    both = SimpleNamespace(targets=["cpu", "opencl"], variants={"cpu": {}, "opencl": {}})
    cpu_only = SimpleNamespace(targets=["cpu"], variants={"cpu": {}})
    monkeypatch.setattr(devices, "opencl_devices", lambda host_free=None: [cl_cpu, gpu])  # a pocl cpu, then a GPU
    for policy in ("prefer_accelerator", "auto"):
        choice = placement.choose(policy, both)
        assert (choice.device.id, choice.device.kind, choice.target) == ("opencl:1", "gpu", "opencl"), choice
        choice = placement.choose(policy, cpu_only)  # no variant for the GPU: the host cpu
        assert (choice.device.id, choice.target) == ("cpu", "cpu"), choice
    monkeypatch.setattr(devices, "opencl_devices", lambda host_free=None: [cl_cpu])  # no accelerator
    choice = placement.choose("prefer_accelerator", both)
    assert (choice.device.id, choice.target) == ("cpu", "cpu"), choice  # the host cpu before an OpenCL cpu


@pytest.mark.opencl
def test_max_performance_follows_measured_latencies(mlp_exe, cache_dir):
    measurements.record(mlp_exe, OPENCL0, "opencl", [0.001] * 5)
    measurements.record(mlp_exe, "cpu", "cpu", [0.004] * 5)
    assert hamr.Session(mlp_exe, device="max_performance").device.id == OPENCL0
    measurements.record(mlp_exe, "cpu", "cpu", [0.0001] * 500)  # cpu measured much faster since
    assert hamr.Session(mlp_exe, device="max_performance").target == "cpu"


def test_closing_a_session_records_its_latency(mlp_exe, cache_dir):
    assert measurements.latencies(mlp_exe) == {}
    with hamr.Session(mlp_exe, device="cpu") as session:
        for _ in range(4):
            session.run({"x": RNG.standard_normal((2, 16)).astype(np.float32)})
    stored = measurements.latencies(mlp_exe)
    assert stored["cpu/cpu"]["runs"] == 4 and stored["cpu/cpu"]["median_ms"] > 0


@pytest.mark.opencl
def test_min_memory_picks_the_smallest_planned_peak(mlp_exe):
    variants = {t: dict(v) for t, v in mlp_exe.variants.items()}
    variants["cpu"]["memory"] = {"peak_bytes": 10_000}
    variants["opencl"]["memory"] = {"peak_bytes": 2_000}
    exe = hamr.Executable(mlp_exe.model, "mlp", mlp_exe.signature, variants, source=mlp_exe.source)
    assert hamr.Session(exe, device="min_memory").device.id == OPENCL0
    variants["opencl"]["memory"] = {"peak_bytes": 1 << 62}  # does not fit in the device's free memory
    assert hamr.Session(exe, device="min_memory").target == "cpu"


def test_an_unknown_device_or_policy_names_what_exists(mlp_exe):
    with pytest.raises(hamr.HamrError, match="not present.*policies: auto, prefer_accelerator"):
        hamr.Session(mlp_exe, device="cuda:3")


@pytest.mark.parametrize("device", DEVICES)
def test_run_async_returns_futures_with_the_results(mlp_exe, device):
    session = hamr.Session(mlp_exe, device=device)
    xs = [RNG.standard_normal((b, 16)).astype(np.float32) for b in (1, 5, 2, 9)]
    futures = [session.run_async({"x": x}) for x in xs]
    for future, x in zip(futures, xs):
        np.testing.assert_allclose(future.result(timeout=60)["y"], mlp_reference(x), **TOL)
    with pytest.raises(hamr.InputError, match="missing input 'x'"):
        session.run_async({})  # raised at once, not inside the future
    session.close()


@pytest.mark.parametrize("device", DEVICES)
def test_threads_share_one_session_and_several_sessions_run_at_once(mlp_exe, device):
    shared = hamr.Session(mlp_exe, device=device)
    others = [hamr.Session(mlp_exe, device=d) for d in ["cpu", *opencl_devices()[:1]]]
    failures = []

    def worker(seed: int, session) -> None:
        rng = np.random.default_rng(seed)
        for i in range(15):
            x = rng.standard_normal((1 + (seed + i) % 4, 16)).astype(np.float32)
            y = session.run({"x": x})["y"]
            if not np.allclose(y, mlp_reference(x), **TOL):
                failures.append((seed, i))

    threads = [threading.Thread(target=worker, args=(s, shared)) for s in range(4)]
    threads += [threading.Thread(target=worker, args=(10 + i, s)) for i, s in enumerate(others)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures
    assert len(shared.program.plans) == 4  # one plan per batch size, shared by the threads


@pytest.mark.parametrize("device", DEVICES)
def test_io_binding_keeps_inputs_and_outputs_on_the_device(mlp_exe, device):
    session = hamr.Session(mlp_exe, device=device)
    x = RNG.standard_normal((3, 16)).astype(np.float32)
    expected = mlp_reference(x)
    binding = session.io_binding()
    binding.bind_input("x", x)
    binding.bind_output("y")
    x[:] = 0  # the binding holds its own copy on the device
    assert session.run_with_binding(binding) == {}
    value = binding.output("y")
    assert session.program.is_device_value(value) == (device != "cpu")
    np.testing.assert_allclose(binding.outputs()["y"], expected, **TOL)
    session.run_with_binding(binding)
    np.testing.assert_allclose(binding.outputs()["y"], expected, **TOL)
    with pytest.raises(hamr.InputError, match="unknown output 'z'"):
        binding.bind_output("z")


@pytest.mark.parametrize("device", DEVICES)
def test_a_bound_device_output_feeds_the_next_run(rnn_exe, device):
    session = hamr.Session(rnn_exe, device=device)
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    binding = session.io_binding()
    binding.bind_input("x", x)
    binding.bind_input("h", np.zeros((2, 8), np.float32))
    binding.bind_output("h_next")
    session.run_with_binding(binding)
    binding.bind_input("h", binding.output("h_next"))  # device to device, no host copy
    out = session.run_with_binding(binding)
    ys, h = rnn_reference([x, x])
    np.testing.assert_allclose(out["y"], ys[1], **TOL)
    np.testing.assert_allclose(binding.outputs()["h_next"], h, **TOL)


# -- 4. carried state --------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES + ["reference"])
def test_state_is_carried_between_calls_and_reset(rnn_exe, device):
    if device == "reference":
        session = hamr.Session(only(rnn_exe, "reference"), device="cpu", state={"h_next": "h"})
    else:
        session = hamr.Session(rnn_exe, device=device, state={"h_next": "h"})
    xs = [RNG.standard_normal((3, 4)).astype(np.float32) for _ in range(4)]
    ys, h = rnn_reference(xs)
    for x, y in zip(xs, ys):
        out = session.run({"x": x})
        assert set(out) == {"y"}  # the state output is carried, not returned
        np.testing.assert_allclose(out["y"], y, **TOL)
    np.testing.assert_allclose(session.state["h"], h, **TOL)
    session.reset_state()
    np.testing.assert_allclose(session.run({"x": xs[0]})["y"], ys[0], **TOL)
    start = RNG.standard_normal((3, 8)).astype(np.float32)
    np.testing.assert_allclose(session.run({"x": xs[1], "h": start})["y"], rnn_reference([xs[1]], start)[0][0], **TOL)


@pytest.mark.parametrize("device", DEVICES)
def test_async_runs_of_a_stateful_session_keep_their_order(rnn_exe, device):
    session = hamr.Session(rnn_exe, device=device, state={"h_next": "h"})
    xs = [RNG.standard_normal((2, 4)).astype(np.float32) for _ in range(8)]
    futures = [session.run_async({"x": x}) for x in xs]
    for future, y in zip(futures, rnn_reference(xs)[0]):
        np.testing.assert_allclose(future.result(timeout=60)["y"], y, **TOL)
    session.close()


@pytest.mark.parametrize("device", DEVICES)
def test_a_growing_cache_starts_empty(device):
    targets = ["cpu"] if device == "cpu" else ["opencl"]
    session = hamr.Session(hamr.compile(cache_model(), targets=targets), device=device, state={"present": "past"})
    rows = [RNG.standard_normal((1, 4)).astype(np.float32) for _ in range(5)]
    for i, row in enumerate(rows):
        np.testing.assert_allclose(session.run({"x": row})["y"], np.concatenate(rows[: i + 1]).sum(0), **TOL)
    assert session.state["past"].shape == (5, 4)


def test_bad_state_bindings_are_refused(rnn_exe):
    with pytest.raises(hamr.InputError, match="'nope' is not an output"):
        hamr.Session(rnn_exe, state={"nope": "h"})
    with pytest.raises(hamr.InputError, match="'hidden' is not an input"):
        hamr.Session(rnn_exe, state={"h_next": "hidden"})


# -- 5. live migration ------------------------------------------------------------------


@pytest.mark.opencl
def test_state_survives_migration_cpu_opencl_and_back(rnn_exe):
    xs = [RNG.standard_normal((2, 4)).astype(np.float32) for _ in range(9)]
    steady = hamr.Session(rnn_exe, device="cpu", state={"h_next": "h"})
    moving = hamr.Session(rnn_exe, device="cpu", state={"h_next": "h"})
    route = {3: OPENCL0, 6: "cpu"}
    for i, x in enumerate(xs):
        if i in route:
            report = moving.migrate(route[i])
            assert (report.destination, report.moved_bytes) == (route[i], 2 * 8 * 4)
            assert moving.device.id == route[i]
            # no plan moves: the cpu variant reads its MatMul weight packed at load (a slot opencl lacks)
            assert report.plans_adopted == 0
        np.testing.assert_allclose(moving.run({"x": x})["y"], steady.run({"x": x})["y"], **TOL)
    np.testing.assert_allclose(moving.state["h"], steady.state["h"], **TOL)
    np.testing.assert_allclose(moving.state["h"], rnn_reference(xs)[1], **TOL)


@pytest.mark.opencl
def test_bindings_move_with_the_session(mlp_exe):
    session = hamr.Session(mlp_exe, device="cpu")
    x = RNG.standard_normal((4, 16)).astype(np.float32)
    binding = session.io_binding()
    binding.bind_input("x", x)
    binding.bind_output("y")
    session.run_with_binding(binding)
    session.migrate(OPENCL0)
    assert session.program.is_device_value(binding.output("y"))
    assert session.program.is_device_value(binding.inputs["x"])
    np.testing.assert_allclose(binding.outputs()["y"], mlp_reference(x), **TOL)
    session.run_with_binding(binding)
    np.testing.assert_allclose(binding.outputs()["y"], mlp_reference(x), **TOL)


def test_a_failed_migration_leaves_the_session_where_it_was(rnn_exe):
    session = hamr.Session(rnn_exe, device="cpu", state={"h_next": "h"})
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    session.run({"x": x})
    with pytest.raises(hamr.HamrError, match="not present"):
        session.migrate("opencl:99")
    assert session.device.id == "cpu"
    np.testing.assert_allclose(session.run({"x": x})["y"], rnn_reference([x, x])[0][1], **TOL)


# -- 6. profiling ----------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES + ["reference"])
def test_profile_records_each_kernel_with_target_and_device(rnn_exe, device, cache_dir):
    exe = rnn_exe if device != "reference" else only(rnn_exe, "reference")
    session = hamr.Session(exe, device="cpu" if device == "reference" else device)
    feeds = {"x": np.ones((2, 4), np.float32), "h": np.zeros((2, 8), np.float32)}
    session.run(feeds, profile=True)
    kernels = session.last_profile.kernels()
    expected_target = {"cpu": "cpu", "reference": "reference"}.get(device, "opencl")
    if expected_target == "reference":
        assert sorted(e.ops for e in kernels) == ["Add", "MatMul", "MatMul", "Mul", "Tanh"]
    else:  # fused: x U, then h W with the Add, Tanh and Mul as its epilogue
        assert [e.ops for e in kernels] == ["gemm", "gemm+Add+Tanh+Mul"]
    for e in kernels:
        assert (e.target, e.device) == (expected_target, session.device.id) and e.duration >= 0
    run = next(e for e in session.last_profile.events if e.kind == "run")
    assert all(run.start <= e.start and e.start + e.duration <= run.start + run.duration + 1e-3 for e in kernels)
    with session.profiling() as prof:
        session.run(feeds)
        session.run(feeds)
    assert sum(e.kind == "run" for e in prof.events) == 2
    assert len(prof.kernels()) == 2 * len(kernels)


def test_cli_profile_writes_a_chrome_trace_and_inspect_shows_it(tmp_path, cache_dir, monkeypatch):
    model = tmp_path / "mlp.onnx"
    onnx.save(mlp_model(), model)
    exe = tmp_path / "mlp.hamr"
    np.save(tmp_path / "x.npy", RNG.standard_normal((2, 16)).astype(np.float32))
    assert hamr_cli("compile", model, "-o", exe, "--target", "cpu").returncode == 0
    none_yet = hamr_cli("inspect", exe, "--profile")
    assert none_yet.returncode == 0 and "no profile recorded" in none_yet.stdout
    trace = tmp_path / "trace.json"
    result = hamr_cli("run", exe, "--input", f"x={tmp_path / 'x.npy'}", "--profile", trace)
    assert result.returncode == 0, result.stderr
    events = json.loads(trace.read_text())["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    assert {e["cat"] for e in complete} == {"kernel", "run"}
    assert all(e["dur"] >= 0 and e["ts"] >= 0 and e["args"]["device"] == "cpu" for e in complete)
    assert any(e["ph"] == "M" and e["name"] == "process_name" for e in events)
    shown = hamr_cli("inspect", exe, "--profile", "--json")
    assert shown.returncode == 0, shown.stderr
    last = json.loads(shown.stdout)["last_profile"]
    assert last["runs"] == 1 and last["devices"] == ["cpu"]
    assert [k["ops"] for k in last["kernels"]] == ["gemm+Add+Relu"]


# -- 8. errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_a_failing_kernel_names_node_and_device_and_the_session_recovers(device):
    targets = ["cpu"] if device == "cpu" else ["opencl"]
    session = hamr.Session(hamr.compile(reshape_model(), targets=targets), device=device)
    x = np.arange(-6, 6, dtype=np.float32).reshape(2, 6)
    with pytest.raises(hamr.KernelError) as info:
        session.run({"x": x, "shape": np.array([5, 5], np.int64)})
    assert info.value.node == "reshape_to_input" and info.value.device == device
    assert "reshape_to_input" in str(info.value) and device in str(info.value)
    y = session.run({"x": x, "shape": np.array([3, 4], np.int64)})["y"]
    np.testing.assert_array_equal(y, np.maximum(x.reshape(3, 4), 0))


def test_a_failed_run_does_not_advance_the_state(rnn_exe):
    session = hamr.Session(rnn_exe, device="cpu", state={"h_next": "h"})
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    session.run({"x": x})
    before = session.state["h"]
    with pytest.raises(hamr.InputError):
        session.run({"x": np.ones((3, 4), np.float32)})  # batch 3 against a carried batch-2 state
    np.testing.assert_array_equal(session.state["h"], before)


@pytest.mark.parametrize("device", DEVICES)
def test_wrong_feeds_raise_before_anything_runs(mlp_exe, device, monkeypatch):
    session = hamr.Session(mlp_exe, device=device)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the program ran on a bad feed")

    monkeypatch.setattr(session.program, "run", must_not_run)
    for feeds, message in [
        ({"x": np.ones((2, 16), np.float64)}, "dtype float64"),
        ({"x": np.ones((2, 15), np.float32)}, "axis 1"),
        ({"x": np.ones(16, np.float32)}, "rank 1"),
        ({"y": np.ones((2, 16), np.float32)}, "unknown input 'y'"),
    ]:
        with pytest.raises(hamr.InputError, match=message):
            session.run(feeds)
        with pytest.raises(hamr.InputError, match=message):
            session.run_async(feeds)


@pytest.mark.parametrize("device", DEVICES)
def test_feeds_accepted_once_are_still_checked_when_they_change(mlp_exe, device):
    """Session remembers accepted (name, dtype, shape) sets; any other feed is validated in full."""
    session = hamr.Session(mlp_exe, device=device)
    x = RNG.standard_normal((2, 16)).astype(np.float32)
    for _ in range(2):
        np.testing.assert_allclose(session.run({"x": x})["y"], mlp_reference(x), **TOL)
    for feeds, message in [
        ({"x": x.astype(np.float64)}, "dtype float64"),
        ({"x": np.ones((2, 15), np.float32)}, "axis 1"),
        ({"x": x, "extra": [1.0]}, "unknown input 'extra'"),
        ({"x": x, "y": x}, "unknown input 'y'"),
    ]:
        with pytest.raises(hamr.InputError, match=message):
            session.run(feeds)
    frozen = x.copy()
    frozen.flags.writeable = False  # read-only inputs are passed by their pointer too
    np.testing.assert_allclose(session.run({"x": frozen})["y"], mlp_reference(x), **TOL)


def test_a_finalizer_recording_inside_a_record_does_not_deadlock(mlp_exe, cache_dir):
    """The garbage collector may run a Session's finalizer inside record() on the same thread."""
    import threading

    def nested():
        with measurements._lock:  # what the outer record() holds when the finalizer runs
            measurements.record(mlp_exe, "cpu", "cpu", [0.002] * 3)

    worker = threading.Thread(target=nested, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "record() deadlocked on a lock its own thread holds"
    assert measurements.latencies(mlp_exe)["cpu/cpu"]["runs"] == 3
