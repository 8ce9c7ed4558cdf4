"""Attack: a tenant ships native code inside a .hamr and the pool (or `hamr run`) loads it.

The trojan is the file's own generated C with a constructor appended, built as a shared object
and swapped in for the cpu variant's `.so` members with every hash recomputed, as an attacker
would: it computes the right answer, so only the marker file it writes shows that it ran.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hamr
from hamr.pool.wire import tensors
from tests.helpers import (
    hamr_cli,
    mlp_model,
    mlp_reference,
    native_targets,
    npy,
    one_error_line,
    opencl_devices,
    start_pool,
    stop,
    wait_until,
)
from tests.security.forge import forge, manifest_of, member

X = np.random.default_rng(7).standard_normal((3, 16)).astype(np.float32)

TROJAN = r"""
#include <stdio.h>
#include <stdlib.h>
static void hamr_test_mark(const char *path) {
  FILE *f = fopen(path, "w");
  if (f) { fputs("the shipped shared object ran", f); fclose(f); }
}
__attribute__((constructor)) static void hamr_test_trojan(void) {
  char inside[4096];
  hamr_test_mark(MARKER);
  if (getenv("TMPDIR")) {  /* a contained worker can write only its own folders: mark there too */
    snprintf(inside, sizeof inside, "%s/%s", getenv("TMPDIR"), MARKER_NAME);
    hamr_test_mark(inside);
  }
}
"""


def trojan_ran(marker: Path, *roots: Path) -> bool:
    """Whether the trojan's constructor ran: its marker, or the copy a contained worker leaves in its
    own temporary folder under one of `roots` (the sandbox must not be what hides a loaded binary)."""
    return marker.exists() or any(any(root.rglob(marker.name)) for root in roots if root.exists())


def trojan_hamr(tmp_path: Path, marker: Path, source_sha256: str | None = None) -> bytes:
    """A genuine cpu .hamr of the mlp whose .so members are replaced by a trojan writing `marker` when loaded;
    with `source_sha256`, its variant says it was compiled from that source (another generator's)."""
    exe = hamr.compile(mlp_model(), targets=["cpu"])
    if source_sha256 is not None:
        exe.variants["cpu"]["source_sha256"] = source_sha256
    data = exe.to_bytes()
    manifest = manifest_of(data)
    files = manifest["variants"]["cpu"]["files"]
    source = tmp_path / f"trojan-{marker.name}.c"
    source.write_text(member(data, files["kernels.c"]).decode() + TROJAN)
    shared = tmp_path / f"trojan-{marker.name}.so"
    subprocess.run(
        [
            "cc",
            "-O1",
            "-fopenmp",
            "-fPIC",
            "-shared",
            "-std=gnu11",
            "-w",
            f'-DMARKER="{marker}"',
            f'-DMARKER_NAME="{marker.name}"',
            str(source),
            "-o",
            str(shared),
        ],
        check=True,
    )
    so = {m: shared.read_bytes() for f, m in files.items() if f.endswith(".so")}
    assert so, "the cpu variant should ship shared objects"
    return forge(data, so)


def _env(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "HAMR_TRUSTED_KEYS"}
    env.update(HAMR_CACHE_DIR=str(tmp_path / "cache"), NO_COLOR="1", COLUMNS="200", **extra)
    return env


def _run(env: dict, exe: Path, out: Path, *extra) -> subprocess.CompletedProcess:
    np.save(out.parent / "x.npy", X)
    return hamr_cli("run", exe, "--input", f"x={out.parent / 'x.npy'}", "--output-dir", out, *extra, env=env)


def _y(out: Path) -> np.ndarray:
    return np.load(out / "y.npy")


# -- against a real pool: a job and a deployment ----------------------------------------


def test_a_tenants_shared_object_never_runs_in_a_pool_job_and_the_job_still_succeeds(real_pool, tmp_path):
    marker = tmp_path / "job-marker"
    evil = trojan_hamr(tmp_path, marker)
    client = real_pool.alice.client
    uploaded = client.post("/v1/executables", content=evil)
    assert uploaded.status_code == 201, uploaded.text
    job = client.post("/v1/jobs", data={"executable_id": str(uploaded.json()["id"])}, files={"x": ("x.npy", npy(X))})
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    final = wait_until(
        "the job to finish",
        lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["state"] in ("succeeded", "failed", "cancelled") and j,
        180,
    )
    assert not trojan_ran(marker, real_pool.root), "the tenant's shared object ran inside the pool"
    assert final["state"] == "succeeded", final
    y = np.load(io.BytesIO(client.get(f"/v1/jobs/{job_id}/outputs/y").content))
    np.testing.assert_allclose(y, mlp_reference(X), rtol=1e-5, atol=1e-5)


def test_a_tenants_shared_object_never_runs_in_a_pool_deployment(real_pool, tmp_path):
    marker = tmp_path / "deployment-marker"
    evil = trojan_hamr(tmp_path, marker)
    client = real_pool.alice.client
    exe_id = client.post("/v1/executables", content=evil).json()["id"]
    deployment = client.post("/v1/deployments", json={"executable_id": exe_id, "replicas": 1})
    assert deployment.status_code == 201, deployment.text
    deployment_id = deployment.json()["id"]
    try:
        answer = client.post(
            f"/v1/deployments/{deployment_id}/infer?wait=120",
            content=tensors.encode({"x": X}),
            headers={"Content-Type": tensors.MEDIA_TYPE},
            timeout=180,
        )
        assert not trojan_ran(marker, real_pool.root), "the tenant's shared object ran inside the pool"
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(tensors.decode(answer.content)["y"], mlp_reference(X), rtol=1e-5, atol=1e-5)
    finally:
        client.delete(f"/v1/deployments/{deployment_id}")
    time.sleep(0.5)
    assert not trojan_ran(marker, real_pool.root)


def _job_state(client, executable: bytes) -> tuple[str, int]:
    exe_id = client.post("/v1/executables", content=executable).json()["id"]
    job_id = client.post("/v1/jobs", data={"executable_id": str(exe_id)}, files={"x": ("x.npy", npy(X))}).json()["id"]
    final = wait_until(
        "the job to finish",
        lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["state"] in ("succeeded", "failed", "cancelled") and j,
        180,
    )
    return final["state"], job_id


def test_a_pool_with_a_trusted_key_runs_binaries_signed_by_it_in_its_workers_and_no_others(tmp_path):
    import httpx

    from tests.helpers import bearer

    private, public = _keys(tmp_path)
    signed_marker, unsigned_marker = tmp_path / "signed-marker", tmp_path / "unsigned-marker"
    signed = tmp_path / "signed.hamr"
    signed.write_bytes(trojan_hamr(tmp_path, signed_marker))
    assert hamr_cli("sign", signed, "--key", private, env=_env(tmp_path)).returncode == 0
    root, _, server, url, _, admin = start_pool(tmp_path, "--trusted-key", public)
    try:
        client = httpx.Client(base_url=url, headers=bearer((root / "default.token").read_text().strip()), timeout=60)
        assert _job_state(client, trojan_hamr(tmp_path, unsigned_marker))[0] == "succeeded"
        assert not trojan_ran(unsigned_marker, root), "an unsigned shared object ran in a pool that trusts a key"
        state, job_id = _job_state(client, signed.read_bytes())
        assert state == "succeeded"
        assert trojan_ran(signed_marker, root), "the pool's worker should use a binary signed by the key it trusts"
        y = np.load(io.BytesIO(client.get(f"/v1/jobs/{job_id}/outputs/y").content))
        np.testing.assert_allclose(y, mlp_reference(X), rtol=1e-5, atol=1e-5)
    finally:
        admin.close()
        log = stop(server)
    assert "Traceback" not in log, log


# -- locally: hamr run, the opt-in, signatures -----------------------------------------


def test_hamr_run_builds_from_source_unless_the_caller_trusts_the_files_binaries(tmp_path):
    marker = tmp_path / "run-marker"
    exe = tmp_path / "evil.hamr"
    exe.write_bytes(trojan_hamr(tmp_path, marker))
    env = _env(tmp_path)
    ran = _run(env, exe, tmp_path / "out1")
    assert ran.returncode == 0, ran.stderr
    assert not marker.exists(), "hamr run loaded a shared object from the file without being asked to"
    np.testing.assert_allclose(_y(tmp_path / "out1"), mlp_reference(X), rtol=1e-5, atol=1e-5)

    trusted = _run(env, exe, tmp_path / "out2", "--trust-binaries")
    assert trusted.returncode == 0, trusted.stderr
    assert marker.exists(), "--trust-binaries should load the file's own shared object"


def test_a_variant_from_another_generator_runs_on_the_kernels_generated_here(tmp_path):
    """A .hamr compiled by another hamr version (its kernels' source differs from what this one generates) still
    runs, and gives the right answer, on kernels built here: its shipped objects, even trusted, are not used."""
    marker = tmp_path / "other-generator-marker"
    exe = tmp_path / "older.hamr"
    exe.write_bytes(trojan_hamr(tmp_path, marker, source_sha256="0" * 64))
    ran = _run(_env(tmp_path), exe, tmp_path / "out", "--trust-binaries")
    assert ran.returncode == 0, ran.stderr
    assert not marker.exists(), "a shared object built from other kernels was loaded"
    np.testing.assert_allclose(_y(tmp_path / "out"), mlp_reference(X), rtol=1e-5, atol=1e-5)


def _keys(tmp_path: Path) -> tuple[Path, Path]:
    made = hamr_cli("keygen", tmp_path / "signer.pem", env=_env(tmp_path))
    assert made.returncode == 0, made.stderr
    private, public = tmp_path / "signer.pem", tmp_path / "signer.pub"
    assert private.stat().st_mode & 0o777 == 0o600
    return private, public


def test_a_file_signed_by_a_trusted_key_uses_its_binary_and_an_untrusted_signer_does_not(tmp_path):
    private, public = _keys(tmp_path)
    marker = tmp_path / "signed-marker"
    exe = tmp_path / "signed.hamr"
    exe.write_bytes(trojan_hamr(tmp_path, marker))  # the signer vouches for whatever it signs
    signed = hamr_cli("sign", exe, "--key", private, env=_env(tmp_path))
    assert signed.returncode == 0, signed.stderr

    other = tmp_path / "other"
    other.mkdir()
    _, stranger = _keys(other)
    untrusted = _run(_env(tmp_path, HAMR_TRUSTED_KEYS=str(stranger)), exe, tmp_path / "out1")
    assert untrusted.returncode == 0, untrusted.stderr
    assert not marker.exists(), "a signature by a key nobody trusts made the binary run"

    trusted = _run(_env(tmp_path, HAMR_TRUSTED_KEYS=str(public)), exe, tmp_path / "out2")
    assert trusted.returncode == 0, trusted.stderr
    assert marker.exists(), "a file signed by a trusted key should use its shipped binary"
    np.testing.assert_allclose(_y(tmp_path / "out2"), mlp_reference(X), rtol=1e-5, atol=1e-5)


def test_a_signed_file_whose_shared_object_was_swapped_afterwards_is_refused(tmp_path, monkeypatch):
    private, public = _keys(tmp_path)
    genuine = tmp_path / "genuine.hamr"
    onnx.save(mlp_model(), tmp_path / "mlp.onnx")
    made = hamr_cli(
        "compile", tmp_path / "mlp.onnx", "-o", genuine, "--target", "cpu", "--sign", private, env=_env(tmp_path)
    )
    assert made.returncode == 0, made.stderr
    marker = tmp_path / "swapped-marker"
    trojan = trojan_hamr(tmp_path, marker)
    files = manifest_of(trojan)["variants"]["cpu"]["files"]
    swapped = {m: member(trojan, m) for f, m in files.items() if f.endswith(".so")}
    env = _env(tmp_path, HAMR_TRUSTED_KEYS=str(public))

    rehashed = tmp_path / "rehashed.hamr"  # hashes recomputed: the signature no longer matches the manifest
    rehashed.write_bytes(forge(genuine.read_bytes(), swapped))
    assert "does not verify" in one_error_line(_run(env, rehashed, tmp_path / "out1"))
    monkeypatch.setenv("HAMR_TRUSTED_KEYS", str(public))
    with pytest.raises(hamr.FormatError, match="does not verify"):
        hamr.load(rehashed, verify=False)

    # bytes swapped in place, manifest (and signature) untouched: caught by the native member's hash, even unverified
    data = bytearray(genuine.read_bytes())
    so_member = next(iter(swapped))
    entry = manifest_of(bytes(data))["members"][so_member]
    data[entry["offset"] + 100] ^= 0xFF
    with pytest.raises(hamr.FormatError, match="does not match its sha256"):
        hamr.load(bytes(data), verify=False)
    assert not marker.exists()


def test_key_and_signature_errors_are_one_line(tmp_path):
    private, public = _keys(tmp_path)
    env = _env(tmp_path)
    assert "already exists" in one_error_line(hamr_cli("keygen", private, env=env))
    onnx.save(mlp_model(), tmp_path / "mlp.onnx")
    assert "is not an unencrypted PEM private key" in one_error_line(
        hamr_cli("compile", tmp_path / "mlp.onnx", "-o", tmp_path / "m.hamr", "--sign", public, env=env)
    )
    exe = tmp_path / "m.hamr"
    hamr.compile(mlp_model(), targets=["cpu"]).save(exe)
    assert hamr_cli("sign", exe, "--key", private, env=env).returncode == 0
    assert "cannot read public key" in one_error_line(
        hamr_cli("inspect", exe, env=_env(tmp_path, HAMR_TRUSTED_KEYS=str(tmp_path / "no.pub")))
    )
    assert "is not a PEM public key" in one_error_line(
        hamr_cli("pool", "up", "--trusted-key", private, "--data-dir", tmp_path / "p", env=env)
    )
    assert "is not a PEM public key" in one_error_line(
        hamr_cli("agent", "--trusted-key", private, "--server", "http://127.0.0.1:9", "--token", "t", env=env)
    )
    garbled = forge(exe.read_bytes(), {}, edit=lambda m: m["signatures"][0].update(signature="00" * 64))
    (tmp_path / "garbled.hamr").write_bytes(garbled)
    assert "does not verify" in one_error_line(
        hamr_cli("inspect", tmp_path / "garbled.hamr", env=_env(tmp_path, HAMR_TRUSTED_KEYS=str(public)))
    )


def test_inspect_shows_the_signer_and_whether_binaries_are_used(tmp_path):
    private, public = _keys(tmp_path)
    exe = tmp_path / "m.hamr"
    hamr.compile(mlp_model(), targets=["cpu"]).save(exe)
    plain = hamr_cli("inspect", exe, env=_env(tmp_path))
    assert "signed by: none; native code: dropped" in plain.stdout, plain.stdout
    assert hamr_cli("sign", exe, "--key", private, env=_env(tmp_path)).returncode == 0
    key_id = hamr.load(exe).trust.signers[0]
    trusted = hamr_cli("inspect", exe, env=_env(tmp_path, HAMR_TRUSTED_KEYS=str(public)))
    assert f"signed by: {key_id[:16]}; native code: used (signed by trusted key {key_id[:16]})" in trusted.stdout, (
        trusted.stdout
    )


# -- the regenerated source: names from the model never become code ---------------------

PAYLOAD = (
    '*/\n#include "/etc/passwd"\n__attribute__((constructor)) static void pwn(void){system("id");}\n/* "\\ %s {name} '
)
W = np.random.default_rng(3).standard_normal((16, 24)).astype(np.float32)
B = np.random.default_rng(4).standard_normal(24).astype(np.float32)


def _named(name: str) -> str:
    return PAYLOAD + name


def crafted_names_model() -> onnx.ModelProto:
    n = _named
    nodes = [
        helper.make_node("MatMul", [n("x"), n("W")], [n("a")], name=n("matmul"), doc_string=PAYLOAD),
        helper.make_node("Add", [n("a"), n("B")], [n("b")], name=n("add")),
        helper.make_node("Relu", [n("b")], [n("r")], name=n("relu")),
        helper.make_node("Softmax", [n("r")], [n("s")], name=n("softmax"), axis=-1),
        helper.make_node("Transpose", [n("s")], [n("y")], name=n("transpose"), perm=[1, 0]),
    ]
    graph = helper.make_graph(
        nodes,
        n("graph"),
        [helper.make_tensor_value_info(n("x"), TensorProto.FLOAT, [n("batch"), 16])],
        [helper.make_tensor_value_info(n("y"), TensorProto.FLOAT, [24, n("batch")])],
        [numpy_helper.from_array(W, n("W")), numpy_helper.from_array(B, n("B"))],
        doc_string=PAYLOAD,
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8, doc_string=PAYLOAD, producer_name=PAYLOAD
    )


def test_names_in_the_model_never_reach_the_generated_source(tmp_path):
    targets = native_targets()
    exe = hamr.compile(crafted_names_model(), targets=targets)
    for target in targets:
        sources = [bytes(d).decode() for f, d in exe.variants[target]["files"].items() if f.endswith((".c", ".cl"))]
        assert sources, target
        for text in sources:
            for fragment in ("passwd", "constructor", "pwn", "system(", "{name}", "%s"):
                assert fragment not in text, (target, fragment)
    expected = np.exp(np.maximum(X @ W + B, 0))
    expected = (expected / expected.sum(-1, keepdims=True)).T
    for target in targets:
        session = hamr.Session(exe, device="cpu" if target == "cpu" else opencl_devices()[0])
        assert session.target == target
        np.testing.assert_allclose(session.run({_named("x"): X})[_named("y")], expected, rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


# -- the GPU targets' binaries ------------------------------------------------------------------------


def test_a_forged_cubin_and_cuda_source_never_reach_the_gpu_driver(tmp_path, monkeypatch):
    """A cuda .hamr whose cubins and PTX (the dialect's and the Triton GEMMs') are swapped for foreign bytes and
    whose kernels.cu is rewritten, every hash recomputed: the driver (a recording fake, there is no GPU here)
    loads only what NVRTC and Triton built on this machine from what it regenerated from the graph."""
    from tests.targets.fake_cuda import FakeCudaDriver

    nvrtc = pytest.importorskip("hamr.targets.cuda.nvrtc")
    if not nvrtc.available():
        pytest.skip(f"NVRTC is not installed ({nvrtc.EXTRA})")
    from hamr.targets.gpu.triton import aot, specs

    monkeypatch.setenv("HAMR_CUDA_ARCHS", "sm_90,compute_80")
    data = hamr.compile(mlp_model(), targets=["cuda"]).to_bytes()
    files = manifest_of(data)["variants"]["cuda"]["files"]
    hostile_source = b'extern "C" __global__ void hamr_k0() { /* the attacker\'s kernel */ }\n'
    trojan = b"\x7fELF" + b"\x00" * 60 + b"attacker's code"
    swapped = {m: (hostile_source if f == "kernels.cu" else trojan) for f, m in files.items()}
    forged = forge(data, swapped)
    fake = FakeCudaDriver(capability=(9, 0), driver_version=13000)
    monkeypatch.setattr("hamr.targets.cuda.driver.driver_module", lambda: fake)
    session = hamr.Session(forged, device="cuda:0")  # unsigned: its native members are dropped
    target = hamr.targets.get_target("cuda")
    lowered, regenerated = target.lowered_for_load(session.executable.model)
    assert b"attacker" not in regenerated.encode()
    expected = [nvrtc.build(regenerated, "sm_90")]
    if aot.available():
        expected += [aot.build(spec, "sm_90")[0] for spec in specs.specs_for(lowered)]
        assert len(expected) > 1  # the MLP's GEMMs run as Triton kernels, built here
    assert fake.modules == expected
    assert all(image != trojan and b"attacker" not in image for image in fake.modules)
