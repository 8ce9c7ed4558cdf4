"""Inputs and outputs named with `/`, as exported models name them (issue 11, bug 9), against a real pool:
`hamr pool submit` downloads them, and the routes take any name the client percent-encodes."""

from __future__ import annotations

import io
import json
from urllib.parse import quote

import numpy as np
from onnx import TensorProto, helper

import hamr
from tests.helpers import hamr_cli
from tests.helpers import model as _model

INPUT, OUTPUT = "feed/x", "save_infer_model/scale_0.tmp_1"


def slashed_model():
    f = TensorProto.FLOAT
    return _model(
        [helper.make_node("Relu", [INPUT], [OUTPUT])],
        [helper.make_tensor_value_info(INPUT, f, ["n", 4])],
        [helper.make_tensor_value_info(OUTPUT, f, ["n", 4])],
        [],
        "slashed",
    )


def test_submit_downloads_outputs_whose_names_have_slashes(real_pool, tmp_path):
    exe = hamr.compile(slashed_model(), targets=["reference"]).save(tmp_path / "slashed.hamr")
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "x.npy", x)
    env = real_pool.env | {"HAMR_POOL_URL": real_pool.url, "HAMR_TOKEN": real_pool.alice.token}
    ran = hamr_cli(
        "pool", "submit", exe, "--input", f"{INPUT}={tmp_path / 'x.npy'}", "--output-dir", tmp_path / "out", env=env
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    index = json.loads((tmp_path / "out" / "outputs.json").read_text())
    assert list(index) == [OUTPUT]
    np.testing.assert_array_equal(np.load(tmp_path / "out" / index[OUTPUT]), np.maximum(x, 0))

    job = real_pool.alice.client.get("/v1/jobs").json()[-1]
    assert (job["inputs"], job["outputs"]) == ([INPUT], [OUTPUT])
    got = real_pool.alice.client.get(f"/v1/jobs/{job['id']}/inputs/{quote(INPUT, safe='')}")
    assert got.status_code == 200, got.text
    np.testing.assert_array_equal(np.load(io.BytesIO(got.content)), x)
    missing = real_pool.alice.client.get(f"/v1/jobs/{job['id']}/outputs/{quote('save_infer_model/other', safe='')}")
    assert missing.status_code == 404 and "has no output 'save_infer_model/other'" in missing.json()["detail"]
