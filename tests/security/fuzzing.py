"""Fuzzing the pool: schemathesis over docs/openapi.json, and hypothesis's raw tensor bodies
(hamr/pool/wire/tensors.py).

tests/security/test_fuzz_api.py runs a few cases of each in CI; bench/fuzz.py runs many and
prints the counts for docs/security.md. A run never stops at the first 5xx: it tallies every
case, and the caller asserts that no case got a 5xx, timed out or lost its connection.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import hypothesis.extra.numpy as hnp
import numpy as np
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

import hamr
from hamr.pool.wire import tensors
from tests.helpers import mlp_model, wait_until

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
TIMEOUT_S = 15.0
NO_WAITING = {"wait": 0}  # a route's `wait` would only make a case slower, not find more


def ready_deployment(client: httpx.Client) -> int:
    """A deployment of the MLP (reference target) by `client`'s tenant, once its replica is ready (so the fast path serves it)."""
    exe = client.post("/v1/executables", content=hamr.compile(mlp_model(), targets=["reference"]).to_bytes())
    assert exe.status_code == 201, exe.text
    made = client.post("/v1/deployments", json={"executable_id": exe.json()["id"], "replicas": 1})
    assert made.status_code == 201, made.text
    deployment_id = made.json()["id"]
    wait_until(
        "the replica to be ready", lambda: client.get(f"/v1/deployments/{deployment_id}").json()["ready"] >= 1, 120
    )
    return deployment_id


@dataclass
class Tally:
    """What a fuzzing run sent and got: cases, answers by status class, and every 5xx or failed exchange."""

    cases: int = 0
    statuses: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)  # cases per operation and mode ("negative POST /v1/jobs")
    server_errors: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # timeouts, dropped connections

    def answered(self, what: str, status: int, body: bytes) -> None:
        self.cases += 1
        self.labels[what] += 1
        self.statuses[f"{status // 100}xx"] += 1
        if status >= 500:
            self.server_errors.append(f"{what} -> {status}: {body[:200]!r}")

    def failed(self, what: str, exc: Exception) -> None:
        self.cases += 1
        self.labels[what] += 1
        self.statuses["no answer"] += 1
        self.failures.append(f"{what}: {type(exc).__name__}: {exc}")

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        return f"{self.cases} cases ({counts}); {len(self.server_errors)} 5xx, {len(self.failures)} without an answer"


def _run(strategy, check, max_examples: int, run_seed: int | None) -> None:
    """`check` on `max_examples` draws of `strategy`, generation only (no shrinking: the tally keeps each case)."""
    test = settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )(given(strategy)(check))
    try:
        (seed(run_seed)(test) if run_seed is not None else test)()
    except Unsatisfiable:  # no case of this kind exists (a negative case of an operation without parameters)
        pass


def fuzz_api(url: str, token: str, max_examples: int, tally: Tally | None = None, run_seed: int | None = 0) -> Tally:
    """Every operation of the spec, positive and negative cases (`max_examples` of each), with `token`."""
    tally = tally if tally is not None else Tally()
    schema = schemathesis.openapi.from_path(SPEC)
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    for result in schema.get_all_operations():
        operation = result.ok()
        waits = any(p.name == "wait" for p in operation.query)
        for mode in GenerationMode:
            strategy = operation.as_strategy(mode, query=NO_WAITING if waits else None)
            _run(
                strategy,
                _sender(tally, f"{mode.value} {operation.label}", url, session, headers),
                max_examples,
                run_seed,
            )
    session.close()
    return tally


def _sender(tally: Tally, label: str, url: str, session: requests.Session, headers: dict):
    def send(case) -> None:
        try:
            response = case.call(base_url=url, session=session, headers=headers, timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            tally.failed(label, exc)
            return
        tally.answered(label, response.status_code, response.content)

    return send


# -- raw tensor bodies ------------------------------------------------------------------------

DTYPES = ["<f4", "<f8", "<f2", ">f4", "<i8", ">i8", "<i4", "|i1", "|u1", "<u2", "|b1"]
ANY_CHARACTER = st.characters(exclude_categories=())  # lone surrogates included
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),
    st.text(ANY_CHARACTER, max_size=8),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
EDGE_INTS = st.sampled_from([0, 1, 2, 3, 4, 64, 2**31, 2**32, 2**62, 2**63 - 1, 2**63, 2**64, 2**70, -1, -(2**63)])
ODD_DTYPES = ["|O8", "V8", "<U4", "M8[s]", "(2,)f4", "f4,i4", "", "f4" * 20]
ENTRY_FIELDS = {  # each field of a header entry: a plausible value, an edge, or any JSON value
    "name": st.text(ANY_CHARACTER, max_size=8) | JSON_VALUES,
    "dtype": st.sampled_from(DTYPES + ODD_DTYPES) | JSON_VALUES,
    "shape": st.lists(st.integers(0, 4) | EDGE_INTS | st.booleans(), max_size=70) | JSON_VALUES,
    "offset": st.integers(0, 256) | EDGE_INTS | JSON_VALUES,
    "nbytes": st.integers(0, 256) | EDGE_INTS | JSON_VALUES,
}
DEEP_JSON = st.integers(1, 200_000).map(lambda depth: "[" * depth + "]" * depth)


def _body(header: bytes, padding: int) -> bytes:
    prefix = struct.pack("<8sI4x", tensors.MAGIC, len(header)) + header
    return prefix + b"\0" * (-len(prefix) % tensors.ALIGNMENT + padding)


def valid_bodies():
    arrays = hnp.arrays(
        dtype=st.sampled_from(DTYPES).map(np.dtype),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
    )
    return st.dictionaries(
        st.text(ANY_CHARACTER.filter(lambda c: not 0xD800 <= ord(c) <= 0xDFFF), min_size=1, max_size=12),
        arrays,
        max_size=3,
    ).map(tensors.encode)


def _mutate(body: bytes, draw) -> bytes:
    at = draw(st.integers(0, max(0, len(body) - 1)))
    kind = draw(st.sampled_from(["flip", "cut", "insert", "size"]))
    if kind == "flip":
        return body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1 :] if body else body
    if kind == "cut":
        return body[:at]
    if kind == "insert":
        return body[:at] + draw(st.binary(min_size=1, max_size=16)) + body[at:]
    return body[:8] + struct.pack("<I", draw(st.integers(0, 2**32 - 1))) + body[12:]


def mlp_bodies():
    """Inputs the MLP of `ready_deployment` takes: x, float32[batch, 16]."""
    rows = hnp.arrays(np.float32, st.tuples(st.integers(0, 4), st.just(16)), elements=st.floats(-4, 4, width=32))
    return rows.map(lambda x: tensors.encode({"x": x}))


@st.composite
def mutated_bodies(draw, bodies=None):
    return _mutate(draw(bodies if bodies is not None else valid_bodies()), draw)


@st.composite
def crafted_headers(draw):
    """A well-framed body whose header is odd: entries with edge or arbitrary values (bools, huge ints, NaN,
    lone surrogates), fields left out, any JSON value, or JSON nested deeper than any parser's stack."""
    entries = st.lists(
        st.fixed_dictionaries(ENTRY_FIELDS) | st.fixed_dictionaries({}, optional=ENTRY_FIELDS), max_size=3
    )
    kind = draw(st.sampled_from(["entries", "any", "deep"]))
    if kind == "deep":
        text = draw(DEEP_JSON)
        text = text if draw(st.booleans()) else '{"tensors":' + text + "}"
    else:
        text = json.dumps({"tensors": draw(entries)} if kind == "entries" else draw(JSON_VALUES))
    return _body(text.encode(), draw(st.integers(0, 512)))


def tensor_bodies(accepted=None):
    """Bodies a client could send as application/x-hamr-tensors: well-formed, mutated, crafted, or any bytes;
    and, given `accepted` (a strategy of bodies a deployment takes), those and their mutations."""
    bodies = [valid_bodies(), mutated_bodies(), crafted_headers(), st.binary(max_size=256)]
    if accepted is not None:
        bodies += [accepted, mutated_bodies(accepted)]
    return st.one_of(bodies)


def decoded_as_the_header_says(body: bytes) -> bool:
    """Decode `body`: True if it decoded, False if it was refused with a TensorsError. Any other exception
    propagates; decoded arrays are checked against the header, read here with the standard library."""
    try:
        decoded = tensors.decode(body)
    except tensors.TensorsError:
        return False
    size = struct.unpack_from("<I", body, 8)[0]
    entries = json.loads(body[16 : 16 + size])["tensors"]
    start = -(-(16 + size) // tensors.ALIGNMENT) * tensors.ALIGNMENT
    assert list(decoded) == [e["name"] for e in entries]
    for entry in entries:
        array = decoded[entry["name"]]
        assert array.dtype == np.dtype(entry["dtype"]) and array.shape == tuple(entry["shape"]), entry
        at = start + entry["offset"]
        assert array.tobytes() == body[at : at + entry["nbytes"]], entry
    return True


def fuzz_decode(max_examples: int, run_seed: int | None = 0) -> Counter:
    """`decoded_as_the_header_says` on `max_examples` bodies: how many decoded and how many were refused."""
    outcomes: Counter = Counter()
    _run(tensor_bodies(), lambda body: outcomes.update([decoded_as_the_header_says(body)]), max_examples, run_seed)
    return Counter({"decoded": outcomes[True], "refused": outcomes[False]})


def fuzz_infer(
    url: str, token: str, deployment_id: int, max_examples: int, tally: Tally | None = None, run_seed: int | None = 0
) -> Tally:
    """POST `max_examples` tensor bodies to a deployment of the MLP (the fast path, then the route), on one kept-alive session."""
    tally = tally if tally is not None else Tally()
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": tensors.MEDIA_TYPE}
    path = f"{url}/v1/deployments/{deployment_id}/infer?wait=0"

    def send(body: bytes) -> None:
        try:
            response = session.post(path, data=body, headers=headers, timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            tally.failed("POST infer", exc)
            return
        tally.answered("POST infer", response.status_code, response.content)

    _run(tensor_bodies(accepted=mlp_bodies()), send, max_examples, run_seed)
    session.close()
    return tally
