"""A worker process for one device: runs the jobs it is sent through a Session, one at a time.

    python -m hamr.pool.nodes.local.worker DEVICE [--parent PID] [--sandbox TENANT_DIR [--protect DIR]...]

With --parent it dies with that process (hamr/pool/nodes/local/sandbox.py die_with_parent), so a worker never
outlives its pool; it also exits when its stdin closes. With --sandbox it contains itself before it
reads any work: it sees the system, the Python installation and that tenant's staging folders
(hamr/pool/nodes/local/staging.py) and nothing else; if it cannot, it says so on its ready line and exits.

The wire is JSON lines (never pickle). Each request on stdin:
    {"job": ID, "attempt": N, "executable": PATH.hamr, "inputs": {NAME: PATH.npy}, "outputs": DIR}
(a gang job's shard also carries "shard": K, "shards": N; its inputs are already that shard's)
and each reply on stdout:
    {"job": ID, "attempt": N, "ok": true, "latency_s": S, "device": D, "target": T, "outputs": DIR/attempt-N}
    {"job": ID, "attempt": N, "ok": false, "error": "one line"}

Outputs go to DIR/attempt-N.partial and are renamed to DIR/attempt-N when complete, so a
worker killed mid-job leaves no directory that looks finished (hamr/pool/sessions.py, the job reply of
every node kind). Sessions are kept per executable path, so a deployment's replica loads its executable once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hamr.errors import HamrError
from hamr.pool.sessions import SessionCache, error_line, job_done, job_failed
from hamr.runtime.npy_io import read_inputs


def run_one(request: dict, device: str, sessions: SessionCache) -> dict:
    job, attempt = request.get("job"), request.get("attempt")
    try:
        path = str(request["executable"])
        session = sessions.get(path, lambda: path, device)
        feeds = read_inputs(request.get("inputs") or {})
        start = time.perf_counter()
        outputs = session.run(feeds)
        latency = time.perf_counter() - start
        return job_done(job, attempt, request["outputs"], outputs, latency, session.device.id, session.target)
    except (HamrError, KeyError, TypeError, ValueError, OSError) as exc:
        return job_failed(job, attempt, error_line(exc))


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hamr.pool.nodes.local.worker")
    parser.add_argument("device")
    parser.add_argument("--parent", type=int, help="die with this process (the pool or agent that started it)")
    parser.add_argument("--sandbox", type=Path, help="contain this worker to one tenant's staging folder")
    parser.add_argument(
        "--protect",
        type=Path,
        action="append",
        default=[],
        help="a folder no rule may open wholesale (the pool's data directory)",
    )
    return parser.parse_args(argv)


def contain(tenant_dir: Path, protected: list[Path]) -> int:
    """Import what running a job needs while it can be read, then restrict this process; the Landlock ABI."""
    import numpy  # noqa: F401

    import hamr.runtime.session  # noqa: F401
    from hamr.pool.nodes.local.sandbox import restrict, worker_policy

    return restrict(worker_policy(tenant_dir, protected))


def main(argv: list[str]) -> int:
    args = _arguments(argv)
    device = args.device
    if args.parent is not None:
        from hamr.pool.nodes.local.sandbox import die_with_parent

        die_with_parent(args.parent)
    ready: dict = {"ready": device}
    if args.sandbox is not None:
        from hamr.pool.nodes.local.sandbox import SandboxError

        try:
            ready["landlock"] = contain(args.sandbox, args.protect)
        except (SandboxError, OSError) as exc:
            print(json.dumps({"ready": None, "error": f"cannot contain the worker: {exc}"}), flush=True)
            return 1
    sessions = SessionCache()
    print(json.dumps(ready), flush=True)
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
