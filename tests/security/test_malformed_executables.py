"""Attack: inconsistent .hamr uploads (a manifest nested too deeply, overlapping members, a negative shape).

Each is a 4xx with one `detail` line, and nothing is stored.
"""

from __future__ import annotations

import pytest

import hamr
from tests.helpers import MANIFEST_CASES as CASES
from tests.helpers import split, tiny_model, with_manifest

NESTED = b'{"members": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.fixture(scope="module")
def data() -> bytes:
    return hamr.compile(tiny_model(), targets=["reference"]).to_bytes()


def _inconsistent(data: bytes, case: str) -> bytes:
    _, manifest = split(data)
    CASES[case](manifest, data)
    return with_manifest(data, manifest)


@pytest.mark.parametrize(
    "case", ["deeply nested manifest", "overlapping members", "weight of shape [-1] and size -4", "format_version true"]
)
def test_an_inconsistent_upload_is_a_4xx_with_one_line_and_nothing_is_stored(real_pool, data, case):
    body = with_manifest(data, None, raw=NESTED) if case == "deeply nested manifest" else _inconsistent(data, case)
    client = real_pool.alice.client
    answer = client.post("/v1/executables", content=body)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "corrupt" in detail, detail
    assert client.get("/v1/executables").json() == []
