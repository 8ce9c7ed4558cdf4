"""A worker process for one device: runs the jobs it is sent through a Session, one at a time.

    python -m hamr.pool.worker DEVICE

The wire is JSON lines (never pickle). Each request on stdin:
    {"job": ID, "attempt": N, "executable": PATH.hamr, "inputs": {NAME: PATH.npy}, "outputs": DIR}
(a gang job's shard also carries "shard": K, "shards": N; its inputs are already that shard's)
and each reply on stdout:
    {"job": ID, "attempt": N, "ok": true, "latency_s": S, "device": D, "target": T, "outputs": DIR/attempt-N}
    {"job": ID, "attempt": N, "ok": false, "error": "one line"}

Outputs go to DIR/attempt-N.partial and are renamed to DIR/attempt-N when complete, so a
worker killed mid-job leaves no directory that looks finished. Sessions are kept per
executable path, so a deployment's replica loads its executable once.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from hamr.errors import HamrError
from hamr.runtime.npy_io import read_inputs, write_outputs


def run_one(request: dict, device: str, sessions: dict) -> dict:
    from hamr.runtime.session import Session

    reply = {"job": request.get("job"), "attempt": request.get("attempt")}
    try:
        path = str(request["executable"])
        session = sessions.get(path)
        if session is None:
            session = sessions[path] = Session(path, device=device)
        feeds = read_inputs(request.get("inputs") or {})
        start = time.perf_counter()
        outputs = session.run(feeds)
        latency = time.perf_counter() - start
        final = Path(request["outputs"]) / f"attempt-{int(request['attempt'])}"
        partial = final.with_name(final.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        write_outputs(outputs, partial)
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        return {**reply, "ok": True, "latency_s": latency, "device": session.device.id, "target": session.target,
                "outputs": str(final)}
    except (HamrError, KeyError, TypeError, ValueError, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {**reply, "ok": False, "error": f"{type(exc).__name__}: {detail}" if not isinstance(exc, HamrError) else detail}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m hamr.pool.worker DEVICE", file=sys.stderr)
        return 2
    device = argv[0]
    sessions: dict = {}
    print(json.dumps({"ready": device}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
        except ValueError as exc:
            print(json.dumps({"ok": False, "error": f"bad request: {exc}"}), flush=True)
            continue
        print(json.dumps(run_one(request, device, sessions)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
