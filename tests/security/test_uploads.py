"""Uploads against a real `hamr pool up` with its default limits: half-sent requests are cut, large
bodies are received a bounded number at a time, and an upload's size does not show in the pool's memory.

Defaults (docs/pool.md, "Limits and timeouts"): headers within 10 s; a body at 64 KiB/s on average
after 20 s of grace; 8 large bodies at once.
"""

from __future__ import annotations

import io
import os
import select
import socket
import threading
import time
from urllib.parse import urlsplit

import numpy as np
import pytest
from onnx import TensorProto, helper

import hamr
from tests.helpers import start_pool, stop, wait_until

HEADER_TIMEOUT_S, BODY_GRACE_S, UPLOAD_SLOTS = 10.0, 20.0, 8
BOUNDARY = b"hamr-upload-test"
UNPLACEABLE = 4096  # devices: the job stays queued, so no worker reads its input


@pytest.fixture(scope="module")
def executable_id(real_pool) -> int:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    data = hamr.compile(helper.make_model(graph), targets=["reference"]).to_bytes()
    response = real_pool.alice.client.post("/v1/executables", content=data)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _address(pool) -> tuple[str, int]:
    parts = urlsplit(pool.url)
    return parts.hostname, parts.port


def _job_body(executable_id: int, floats: int) -> tuple[bytes, int, bytes]:
    """A job submission's multipart body with one float32 input of `floats` zeros, as (head, zeros, tail)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (floats,)})
    head = (
        b"--"
        + BOUNDARY
        + b'\r\nContent-Disposition: form-data; name="executable_id"\r\n\r\n'
        + str(executable_id).encode()
        + b"\r\n--"
        + BOUNDARY
        + b'\r\nContent-Disposition: form-data; name="n_devices"\r\n\r\n'
        + str(UNPLACEABLE).encode()
        + b"\r\n--"
        + BOUNDARY
        + b'\r\nContent-Disposition: form-data; name="x"; filename="x.npy"\r\n'
        + b"Content-Type: application/octet-stream\r\n\r\n"
        + header.getvalue()
    )
    return head, floats * 4, b"\r\n--" + BOUNDARY + b"--\r\n"


def _request_head(pool, token: str, path: str, length: int) -> bytes:
    host, port = _address(pool)
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY.decode()}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def _open_job_upload(pool, executable_id: int, floats: int, first_zeros: int) -> socket.socket:
    """A job upload of `floats` float32 zeros, sent as far as `first_zeros` bytes of them, and held."""
    head, zeros, tail = _job_body(executable_id, floats)
    sock = socket.create_connection(_address(pool))
    sock.sendall(_request_head(pool, pool.alice.token, "/v1/jobs", len(head) + zeros + len(tail)) + head)
    sock.sendall(bytes(first_zeros))
    return sock


def _closed(sock: socket.socket) -> bool:
    """The server closed the connection (what it answered before that is read and dropped)."""
    try:
        while select.select([sock], [], [], 0)[0]:
            if not sock.recv(65536):
                return True
    except OSError:
        return True
    return False


def _blob_files(pool) -> set[str]:
    return {str(p.relative_to(pool.root)) for p in (pool.root / "blobs").rglob("*") if p.is_file()}


def _partials(pool) -> list[str]:
    return [p.name for p in (pool.root / "blobs").rglob(".partial-*")]


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_slowloris_connections_are_closed_after_the_header_timeout_while_others_are_served(real_pool):
    socks = []
    for _ in range(50):
        sock = socket.create_connection(_address(real_pool))
        sock.sendall(b"GET /v1/nodes HTTP/1.1\r\nHost: pool\r\n")
        socks.append(sock)
    start, served, open_ = time.monotonic(), [], set(range(len(socks)))
    try:
        while open_ and time.monotonic() - start < HEADER_TIMEOUT_S + 15:
            for i in list(open_):
                try:
                    socks[i].sendall(b"X-Slow: 1\r\n")  # a header line a second, never the blank line
                except OSError:
                    open_.discard(i)
                    continue
                if _closed(socks[i]):
                    open_.discard(i)
            began = time.monotonic()
            assert real_pool.bob.client.get("/v1/jobs").status_code == 200
            served.append(time.monotonic() - began)
            time.sleep(1.0)
        elapsed = time.monotonic() - start
    finally:
        for sock in socks:
            sock.close()
    assert not open_, f"{len(open_)} of 50 half-sent requests still held after {elapsed:.0f} s"
    assert elapsed >= HEADER_TIMEOUT_S - 1  # cut by the header deadline, not refused at once
    assert max(served) < 2.0, f"another tenant's request took {max(served):.2f} s meanwhile"


def test_a_body_sent_too_slowly_is_cut_with_408_and_leaves_nothing(real_pool, executable_id):
    before = _blob_files(real_pool)
    sock = _open_job_upload(real_pool, executable_id, 2_500_000, 1000)
    start, answer = time.monotonic(), b""
    try:
        sock.settimeout(1.0)
        while time.monotonic() - start < BODY_GRACE_S + 15:
            try:
                sock.sendall(bytes(1000))  # 1 kB/s: far below the floor
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
    finally:
        elapsed = time.monotonic() - start
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408 "), f"after {elapsed:.0f} s: {answer[:200]!r}"
    assert b'{"detail": "the request\'s body arrived slower than' in answer
    assert elapsed >= BODY_GRACE_S - 1
    wait_until("the staged upload to be removed", lambda: not _partials(real_pool), 10)
    assert _blob_files(real_pool) == before


def test_large_uploads_beyond_the_cap_are_503_with_retry_after(real_pool, executable_id):
    held = [_open_job_upload(real_pool, executable_id, 25_000_000, 256 * 1024) for _ in range(UPLOAD_SLOTS)]
    try:
        deadline = time.monotonic() + 10
        while len(_partials(real_pool)) < UPLOAD_SLOTS and time.monotonic() < deadline:  # each is staging its input
            time.sleep(0.1)
        head, zeros, tail = _job_body(executable_id, 1_000_000)  # 4 MB: a large body
        body = head + bytes(zeros) + tail
        headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}"}
        refused = real_pool.alice.client.post("/v1/jobs", content=body, headers=headers)
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert "large request bodies" in refused.json()["detail"]
        assert real_pool.bob.client.get("/v1/jobs").status_code == 200  # small requests are not held back
    finally:
        for sock in held:
            sock.close()
    wait_until("the held uploads to be dropped", lambda: not _partials(real_pool), 10)
    accepted = real_pool.alice.client.post("/v1/jobs", content=body, headers=headers)
    assert accepted.status_code == 201, accepted.text
    real_pool.alice.client.post(f"/v1/jobs/{accepted.json()['id']}/cancel")


def _rss_growth_mb(pid: int, action):
    """`action()`'s answer, and how far the process `pid`'s RSS rose above its level before, at the peak."""
    idle, peak, done = _rss_kib(pid), [0], threading.Event()

    def poll():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_kib(pid))
            time.sleep(0.01)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        answer = action()
    finally:
        done.set()
        poller.join()
    return answer, (peak[0] - idle) / 1024


def test_a_300_mb_job_input_does_not_show_in_the_pools_memory_going_in_or_out(real_pool, executable_id):
    floats = 75_000_000  # 300 MB
    head, zeros, tail = _job_body(executable_id, floats)

    def body():
        yield head
        chunk = bytes(1 << 20)
        for offset in range(0, zeros, len(chunk)):
            yield chunk[: min(len(chunk), zeros - offset)]
        yield tail

    headers = {
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}",
        "Content-Length": str(len(head) + zeros + len(tail)),
    }
    client = real_pool.alice.client
    response, grew_mb = _rss_growth_mb(
        real_pool.server.pid, lambda: client.post("/v1/jobs", content=body(), headers=headers, timeout=300)
    )
    assert response.status_code == 201, response.text
    job = response.json()
    client.post(f"/v1/jobs/{job['id']}/cancel")
    npy_size = len(head) - head.rindex(b"\x93NUMPY") + zeros  # the .npy as sent
    assert any(p.stat().st_size == npy_size for p in (real_pool.root / "blobs").rglob("*") if p.is_file())
    assert grew_mb < 100, f"the pool's RSS grew by {grew_mb:.0f} MB receiving a 300 MB upload"

    def download() -> int:
        with client.stream("GET", f"/v1/jobs/{job['id']}/inputs/x", timeout=300) as streamed:
            assert streamed.status_code == 200
            return sum(len(piece) for piece in streamed.iter_bytes())

    received, grew_mb = _rss_growth_mb(real_pool.server.pid, download)
    assert received == npy_size
    assert grew_mb < 100, f"the pool's RSS grew by {grew_mb:.0f} MB sending a 300 MB download"


def test_an_upload_cut_off_half_way_stores_nothing(real_pool, executable_id):
    jobs = real_pool.alice.client.get("/v1/jobs").json()
    blobs = _blob_files(real_pool)
    sock = _open_job_upload(real_pool, executable_id, 12_500_000, 20_000_000)  # 20 of 50 MB, then gone
    sock.close()
    wait_until("the staged upload to be removed", lambda: not _partials(real_pool), 10)
    time.sleep(0.5)
    assert not _partials(real_pool)
    assert real_pool.alice.client.get("/v1/jobs").json() == jobs
    assert _blob_files(real_pool) == blobs


def test_the_deadlines_and_the_cap_are_options_of_pool_up(tmp_path):
    root, _, server, url, _, admin = start_pool(
        tmp_path, "--header-timeout", "1", "--body-timeout", "0.5", "--body-min-rate", "1000000", "--upload-slots", "1"
    )
    admin.close()
    try:
        address = (urlsplit(url).hostname, urlsplit(url).port)
        auth = b"Authorization: Bearer " + (root / "default.token").read_text().strip().encode()
        answers = []
        for head in (
            b"GET /v1/nodes HTTP/1.1\r\nHost: pool\r\n",  # headers never finished
            b"POST /v1/executables HTTP/1.1\r\nHost: pool\r\nContent-Length: 100\r\n" + auth + b"\r\n\r\n",
        ):  # no body
            with socket.create_connection(address) as sock:
                sock.sendall(head)
                sock.settimeout(10)
                start_s = time.monotonic()
                answers.append((sock.recv(65536), time.monotonic() - start_s))
        (headers_cut, headers_s), (body_cut, body_s) = answers
        assert headers_cut.startswith(b"HTTP/1.1 408 ") and b"within 1 s" in headers_cut and headers_s < 5
        assert body_cut.startswith(b"HTTP/1.1 408 ") and b"1,000,000 bytes/s" in body_cut and body_s < 5
    finally:
        stop(server)


def test_a_staged_upload_left_by_a_dead_pool_is_removed_when_the_store_opens(tmp_path):
    from hamr.pool.registry.blobs import STALE_STAGED_S, BlobStore

    store = BlobStore(tmp_path)
    stale, live = store.stage(), store.stage()
    stale.write(b"half an upload")
    stale.close()
    old = time.time() - STALE_STAGED_S - 60
    os.utime(stale.path, (old, old))
    BlobStore(tmp_path)
    assert not stale.path.exists() and live.path.exists()
