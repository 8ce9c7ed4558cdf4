"""What several test modules share: models with NumPy references, the OpenCL device (found lazily),
the `hamr` command line as a subprocess, a real `hamr pool up`, the pool's wire helpers, and
.hamr manifest surgery. Test modules import from here (or take conftest fixtures), never from
each other.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import shutil
import signal
import ssl
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

# -- optional packages and plugins --------------------------------------------------------------


def require(module: str, extra: str = "test"):
    """Import an optional package or skip the test with the reason (and the extra that installs it)."""
    return pytest.importorskip(module, reason=f"{module} is not installed (pip install -e '.[{extra}]')")


@contextlib.contextmanager
def installed_plugin(source: Path, module: str, root: Path):
    """pip-install a test plugin distribution into a private folder (offline) and put it on sys.path:
    its entry points are then found as an installed package's are."""
    copy, site = root / "src", root / "site"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--target",
            str(site),
            str(copy),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        sys.modules.pop(module, None)


# -- devices: found when a test first asks, never at import ---------------------------------------

NO_OPENCL = "no OpenCL device (pip install pocl-binary-distribution)"


@functools.cache
def opencl_devices() -> tuple[str, ...]:
    """This machine's OpenCL device ids ("opencl:0", ...); empty where there is none."""
    from hamr.runtime.devices import available_devices

    return tuple(d.id for d in available_devices() if d.id.startswith("opencl:"))


def native_targets() -> list[str]:
    """The native targets this machine can run: cpu, and opencl where it has a device."""
    return ["cpu"] + (["opencl"] if opencl_devices() else [])


# A parameter list of devices: the opencl one carries the `opencl` marker (tests/conftest.py skips it
# where there is no OpenCL device). opencl:0 is the first device's id (hamr.runtime.devices).
DEVICES = ["cpu", pytest.param("opencl:0", marks=pytest.mark.opencl)]


# -- models and their NumPy references ------------------------------------------------------------

RNG = np.random.default_rng(11)
U = (RNG.standard_normal((4, 8)) * 0.4).astype(np.float32)
W = (RNG.standard_normal((8, 8)) * 0.4).astype(np.float32)
M1 = (RNG.standard_normal((16, 24)) * 0.3).astype(np.float32)
B1 = RNG.standard_normal(24).astype(np.float32)


def model(nodes, inputs, outputs, inits, name="g") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def one_node_model(op: str, inputs, outputs: dict, inits=(), opset: int = 22, **attrs) -> onnx.ModelProto:
    """A model of one node. `inputs`: (name, (element type, shape)) pairs in the node's order, where
    "" is an omitted optional input and a spec of None marks one of `inits` (arrays named by
    `numpy_helper.from_array`); `outputs` maps names to (element type, shape)."""
    inputs = list(inputs)
    node = helper.make_node(op, [name for name, _ in inputs], list(outputs), **attrs)
    graph_inputs = [helper.make_tensor_value_info(name, *spec) for name, spec in inputs if name and spec is not None]
    graph_outputs = [helper.make_tensor_value_info(name, t, shape) for name, (t, shape) in outputs.items()]
    graph = helper.make_graph([node], op.lower(), graph_inputs, graph_outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run_natively(model_proto: onnx.ModelProto, feeds: dict, device: str) -> tuple[dict, dict]:
    """(hamr's outputs on `device` with every node native, onnx.reference's outputs) for one model."""
    from onnx.reference import ReferenceEvaluator

    import hamr

    target = "cpu" if device == "cpu" else "opencl"
    exe = hamr.load(hamr.compile(model_proto, targets=[target]).to_bytes())
    variant = exe.variants[target]
    assert not variant["fallback"], variant["fallback"]
    got = hamr.Session(exe, device=device).run(feeds)
    names = [o.name for o in model_proto.graph.output]
    want = dict(zip(names, ReferenceEvaluator(model_proto).run(None, feeds)))
    return got, want


def mlp_model() -> onnx.ModelProto:
    """y = relu(x M1 + B1), x float32[batch, 16]."""
    f = TensorProto.FLOAT
    return model(
        [
            helper.make_node("MatMul", ["x", "m1"], ["a"]),
            helper.make_node("Add", ["a", "b1"], ["b"]),
            helper.make_node("Relu", ["b"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", f, ["batch", 16])],
        [helper.make_tensor_value_info("y", f, ["batch", 24])],
        [numpy_helper.from_array(M1, "m1"), numpy_helper.from_array(B1, "b1")],
        "mlp",
    )


def mlp_reference(x):
    return np.maximum(x @ M1 + B1, 0)


@functools.cache
def mlp_hamr(targets: tuple[str, ...]) -> bytes:
    """mlp_model() compiled for `targets`, as .hamr bytes (once per session and targets)."""
    import hamr

    return hamr.compile(mlp_model(), targets=list(targets)).to_bytes()


TINY = np.random.default_rng(1234)
# Odd sizes on purpose: W1 is 33*31*4 = 4092 bytes, so W2 only lands on a 64-byte
# boundary if the writer pads between tensors.
TINY_W1 = TINY.standard_normal((33, 31)).astype(np.float32)
TINY_B = TINY.standard_normal(31).astype(np.float32)  # 124 bytes: small enough to stay inline
TINY_W2 = TINY.standard_normal((31, 31)).astype(np.float32)


def tiny_model() -> onnx.ModelProto:
    """y = (x W1 + B) W2: three weights, for the container tests."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W1"], ["h"]),
            helper.make_node("Add", ["h", "B"], ["hb"]),
            helper.make_node("MatMul", ["hb", "W2"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 33])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 31])],
        [
            numpy_helper.from_array(TINY_W1, "W1"),
            numpy_helper.from_array(TINY_B, "B"),
            numpy_helper.from_array(TINY_W2, "W2"),
        ],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m)
    return m


# -- .hamr manifest surgery -------------------------------------------------------------------------

HEADER = struct.Struct("<8sIIQQ32s")  # the documented 64-byte header


def split(data: bytes) -> tuple[bytes, dict]:
    """(everything before the manifest, the manifest)."""
    _, _, _, offset, size, _ = HEADER.unpack(data[:64])
    return data[:offset], json.loads(data[offset : offset + size])


def with_manifest(data: bytes, manifest, raw: bytes | None = None) -> bytes:
    """`data` with its manifest replaced (as JSON, or `raw` bytes) and the header's hash recomputed."""
    body, _ = split(data)
    text = raw if raw is not None else json.dumps(manifest).encode()
    magic, version, header_size, offset, _, _ = HEADER.unpack(data[:64])
    return HEADER.pack(magic, version, header_size, offset, len(text), hashlib.sha256(text).digest()) + body[64:] + text


def _weight(manifest: dict) -> dict:
    return next(iter(manifest["weights"]["tensors"].values()))


def _overlap(manifest: dict, data: bytes) -> None:
    """The weights member grown over the start of the next one, its hash recomputed: both still read."""
    first = manifest["members"]["weights"]
    second = min((e for e in manifest["members"].values() if e["offset"] > first["offset"]), key=lambda e: e["offset"])
    first["size"] = second["offset"] + 8 - first["offset"]
    first["sha256"] = hashlib.sha256(data[first["offset"] : first["offset"] + first["size"]]).hexdigest()


# Inconsistent manifests (found when the pool was attacked, issue 11): each edits (manifest, data) in place.
MANIFEST_CASES = {
    "overlapping members": _overlap,
    "weight of shape [-1] and size -4": lambda m, d: _weight(m).update(shape=[-1], size=-4),
    "weight of size -4": lambda m, d: _weight(m).update(size=-4),
    "weight of shape [true, 2]": lambda m, d: _weight(m).update(shape=[True, 2]),
    "weight of shape [1.5]": lambda m, d: _weight(m).update(shape=[1.5]),
    "weight of a shape whose product wraps in int64": lambda m, d: _weight(m).update(shape=[2**32, 2**32], size=0),
    "weight of a shape past int64": lambda m, d: _weight(m).update(shape=[2**70]),
    "weight past the weights member": lambda m, d: _weight(m).update(offset=1 << 20),
    "format_version true": lambda m, d: m.update(format_version=True),
    "member offset true": lambda m, d: m["members"]["graph"].update(offset=True),
    "member size false": lambda m, d: m["members"]["graph"].update(size=False),
    "member of negative size": lambda m, d: m["members"]["graph"].update(size=-64),
    "model without a name": lambda m, d: m["model"].pop("name"),
    "signatures not a list": lambda m, d: m.update(signatures={"a": 1}),
    "variants a list": lambda m, d: m.update(variants=[1]),
}


# -- the command line -----------------------------------------------------------------------------

HAMR = [sys.executable, "-m", "hamr.cli.app"]


def hamr_cli(
    *args, env: dict | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """The real `hamr` command, run to its end. `env` is the whole environment; by default this process's,
    narrowed to 60 columns (a long message must still be one line). Colour is always off."""
    env = dict(os.environ, COLUMNS="60") if env is None else dict(env)
    for forcing in ("FORCE_COLOR", "PY_COLORS", "CLICOLOR_FORCE"):
        env.pop(forcing, None)
    env.update(NO_COLOR="1", TERM="dumb")
    return subprocess.run([*HAMR, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The one `error: ...` line of a command that failed with exit status 2 (and printed nothing else)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert result.stdout.strip() == "", result.stdout
    line = lines[0]
    assert line.startswith("error: "), line
    return line


def start(env: dict, *args, command: list[str] = HAMR) -> subprocess.Popen:
    """A long-running hamr command in a process group of its own (so a test can kill it and its workers)."""
    return subprocess.Popen(
        [*command, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )


def workers_of(pid: int) -> list[int]:
    """The worker processes a process started (hamr.pool.nodes.local.worker in their command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            ppid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:"))
            if ppid == pid and b"hamr.pool.nodes.local.worker" in cmdline:
                found.append(int(entry.name))
    return found


def infer_mlp(client, deployment, seed: int) -> None:
    """One raw-tensors request to a deployment of the MLP on seeded inputs, answered 200 with NumPy's answer."""
    from hamr.pool.wire import tensors

    x = np.random.default_rng(seed).standard_normal((2, 16)).astype(np.float32)
    response = client.post(
        f"/v1/deployments/{deployment}/infer",
        content=tensors.encode({"x": x}),
        headers={"Content-Type": tensors.MEDIA_TYPE},
    )
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(tensors.decode(response.content)["y"], mlp_reference(x), rtol=1e-4, atol=1e-5)


def agent_args(url: str, token: str, name: str, *options) -> tuple:
    """`hamr agent`'s arguments: join the pool at `url` with `token` as node `name`, then `options`."""
    return ("agent", "--server", url, "--token", token, "--name", name, *options)


def spawn(env: dict, *args) -> subprocess.Popen:
    """A short hamr command, run alongside others; `finish` waits for it."""
    return subprocess.Popen(
        [*HAMR, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def finish(proc: subprocess.Popen, timeout: float = 60) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def stop(proc: subprocess.Popen) -> str:
    """SIGTERM the process group started by `start` (SIGKILL after 20 s); its output."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return proc.stdout.read() if proc.stdout else ""


def wait_until(what: str, check, timeout: float = 30.0, every: float = 0.1):
    """Poll `check` until it returns something true, and return that; AssertionError naming `what` when
    `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


# -- a real `hamr pool up` --------------------------------------------------------------------------


class RunningPool(NamedTuple):
    root: Path  # the pool's data directory ($HAMR_POOL_DIR)
    env: dict  # the environment to run `hamr` commands against it
    server: subprocess.Popen
    url: str
    admin_token: str
    admin: object  # an httpx.Client with the admin token


def pool_url(root: Path) -> str | None:
    """The URL in <root>/pool.json, once it is there."""
    try:
        return json.loads((root / "pool.json").read_text())["url"]
    except (OSError, ValueError, KeyError):
        return None


def _answers(client, path: str) -> bool:
    import httpx

    try:
        return client.get(path).status_code == 200
    except httpx.HTTPError:
        return False


def start_pool(
    tmp_path: Path, *args, heartbeat_timeout: float = 8, ca: Path | None = None, env: dict | None = None
) -> RunningPool:
    """A real `hamr pool up --port 0` in tmp_path/pool (cache in tmp_path/cache), answering its API; `args`
    go to `hamr pool up` (e.g. --tls-cert/--tls-key, then pass `ca`). No HAMR_* variable of this process
    reaches it, only those of `env`. The default heartbeat timeout (8 s) leaves slack for a loaded 2-core machine."""
    import httpx

    root = tmp_path / "pool"
    extra, env = env or {}, {k: v for k, v in os.environ.items() if not k.startswith("HAMR_")}
    env.update(HAMR_POOL_DIR=str(root), HAMR_CACHE_DIR=str(tmp_path / "cache"), NO_COLOR="1", COLUMNS="200", **extra)
    server = start(env, "pool", "up", "--port", "0", "--heartbeat-timeout", heartbeat_timeout, *args)
    try:
        url = wait_until("hamr pool up to write pool.json", lambda: pool_url(root) or server.poll() is not None, 90)
        if server.poll() is not None:
            raise AssertionError(f"hamr pool up exited with {server.returncode}: {server.stdout.read()}")
        admin_token = (root / "admin.token").read_text().strip()
        verify = ssl.create_default_context(cafile=str(ca)) if ca else True
        admin = httpx.Client(base_url=url, headers=bearer(admin_token), timeout=30, verify=verify)
        wait_until("the pool's API", lambda: _answers(admin, "/v1/nodes"), 60)
    except BaseException:
        stop(server)
        raise
    return RunningPool(root, env, server, url, admin_token, admin)


# -- the pool's wire and registry -------------------------------------------------------------------


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def report(uuid: str, **changes):
    """A made-up DeviceReport (a 16-core cpu) with `changes`."""
    from hamr.pool.drivers.base import DeviceReport

    fields = dict(
        uuid=uuid,
        driver="cpu",
        vendor="AcmeChips",
        kind="cpu",
        architecture="x86-64-v3",
        memory_total=64 << 30,
        memory_free=32 << 30,
        compute_units=16,
        targets=("cpu", "reference"),
        local_id="cpu",
        details={"numa": 0},
    )
    return DeviceReport(**(fields | changes))


# The registry's two databases, as parameters: a fixture taking `request` opens the one its test asks
# for with registry_for (tests/pool/conftest.py's `backend` runs every test that takes it on both).
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextlib.contextmanager
def backend_url(request, backend: str):
    """None for SQLite; for PostgreSQL a URL into a fresh schema on the session's server (or a skip)."""
    if backend == "sqlite":
        yield None
        return
    from tests import postgres

    with postgres.schema(request.getfixturevalue("postgres_url")) as url:
        yield url


@contextlib.contextmanager
def registry_for(request, tmp_path: Path, backend: str | None = None):
    """An open registry with its data in tmp_path/pool, on `backend` (default: the parameter the test was
    given for the fixture, else SQLite)."""
    from hamr.pool.registry import open_registry

    backend = backend or getattr(request, "param", "sqlite")
    with backend_url(request, backend) as url, open_registry(url, data_dir=tmp_path / "pool") as reg:
        yield reg
