"""The pool fuzzed at length: tests/security/test_fuzz_api.py's runs, with many more cases, for docs/security.md.

    python bench/fuzz.py [--api-examples 100] [--bodies 5000] [--decodes 20000] [--seed 0]

Starts `hamr pool up` (its own data directory, port chosen free) with tenants alice and bob,
and alice's deployment of a small MLP, then runs in turn:
- decode: `--decodes` raw tensor bodies (well-formed, mutated, crafted headers, any bytes) through
  hamr.pool.wire.tensors.decode in this process: each decodes as its header says or is a TensorsError;
- infer: `--bodies` such bodies, and the MLP's own inputs with their mutations, POSTed to the
  deployment on one kept-alive connection;
- schemathesis over docs/openapi.json, positive and negative cases, `--api-examples` per operation
  and mode, with bob's token, then alice's, then the admin's (alice's may delete her deployment,
  so the bodies go first).
It prints each run's case count, its answers by status class, and every 5xx or failed exchange;
it exits 1 if there was any.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import bearer, start_pool, stop  # noqa: E402
from tests.security.fuzzing import Tally, fuzz_api, fuzz_decode, fuzz_infer, ready_deployment  # noqa: E402


def _report(name: str, tally: Tally, seconds: float) -> int:
    print(f"{name}: {tally.summary()} in {seconds:.0f} s", flush=True)
    for line in tally.server_errors + tally.failures:
        print(f"  {line}")
    return len(tally.server_errors) + len(tally.failures)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--api-examples", type=int, default=100, help="schemathesis cases per operation and mode, per token"
    )
    parser.add_argument("--bodies", type=int, default=5000, help="tensor bodies POSTed to the deployment")
    parser.add_argument("--decodes", type=int, default=20000, help="tensor bodies decoded in process")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import httpx

    problems = 0
    started = time.monotonic()
    outcomes = fuzz_decode(args.decodes, run_seed=args.seed)
    print(
        f"decode: {sum(outcomes.values())} bodies ({outcomes['decoded']} decoded, {outcomes['refused']} refused "
        f"with a TensorsError, 0 other exceptions) in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="hamr-fuzz-") as tmp:
        root, env, server, url, admin_token, admin = start_pool(Path(tmp))
        try:
            tokens = {name: admin.post("/v1/tenants", json={"name": name}).json()["token"] for name in ("alice", "bob")}
            with httpx.Client(base_url=url, headers=bearer(tokens["alice"]), timeout=60) as alice:
                deployment = ready_deployment(alice)
            started = time.monotonic()
            tally = fuzz_infer(url, tokens["alice"], deployment, args.bodies, run_seed=args.seed)
            problems += _report("infer", tally, time.monotonic() - started)
            for who, token in (("bob", tokens["bob"]), ("alice", tokens["alice"]), ("admin", admin_token)):
                started = time.monotonic()
                tally = fuzz_api(url, token, args.api_examples, run_seed=args.seed)
                problems += _report(f"schemathesis as {who}", tally, time.monotonic() - started)
            alive = server.poll() is None
        finally:
            admin.close()
            log = stop(server)
    unhandled = log.count("unhandled error")
    print(f"the pool {'stayed up' if alive else 'DIED'}; {unhandled} unhandled errors in its log")
    return 1 if problems or unhandled or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
