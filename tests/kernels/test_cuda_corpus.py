"""The CUDA corpus: every kernel converted by hamr convert, run on cpu and OpenCL against its NumPy reference,
and built for CUDA and ROCm."""

from __future__ import annotations

import functools

import numpy as np
import pytest

pytest.importorskip("clang.cindex", reason="libclang is not installed (pip install 'hamr[kernels]')")

import hamr.kernels  # noqa: E402
from hamr.frontends.cuda import convert_file  # noqa: E402
from hamr.targets.cuda import nvrtc  # noqa: E402
from hamr.targets.rocm import clang  # noqa: E402
from tests.kernels.corpus.cases import CASES, HERE  # noqa: E402

DEVICES = ["cpu", pytest.param("opencl:0", marks=pytest.mark.opencl)]
FILES = sorted(p.name for p in HERE.glob("*.cu"))


@functools.cache
def module(file: str):
    return hamr.kernels.load(HERE / file)


def test_the_corpus_is_large_enough_and_every_kernel_has_a_case():
    kernels = {(f, k) for f in FILES for k in convert_file(HERE / f).kernels}
    assert len(kernels) >= 20
    assert kernels == {(c.file, c.kernel) for c in CASES}


@pytest.mark.parametrize("file", FILES)
def test_every_kernel_converts_automatically(file):
    conversion = convert_file(HERE / file)
    assert not conversion.refused, [str(c) for c in conversion.refused]
    assert conversion.rate.kernels_converted == conversion.rate.kernels > 0
    assert conversion.rate.lines == 1.0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_converted_kernel_matches_numpy(case, device):
    data = case.make(np.random.default_rng(0))
    inputs = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in data.items()}
    want = case.reference(inputs)
    module(case.file).launch(
        case.kernel, case.grid, case.block, *(data[a] for a in case.args), shared_bytes=case.shared_bytes, device=device
    )
    got = case.outputs(data)
    for name, expected in want.items():
        np.testing.assert_allclose(got[name], expected, rtol=case.rtol, atol=case.atol, err_msg=f"{case.id}: {name}")


@pytest.mark.skipif(nvrtc.module() is None, reason=f"NVRTC is not installed ({nvrtc.EXTRA})")
@pytest.mark.parametrize("file", FILES)
def test_converted_corpus_compiles_for_cuda(file):
    arch = nvrtc.archs()[0]  # one architecture per file: tests/kernels/test_portable_kernels.py builds them all
    built = module(file).compile_for("cuda", arch)
    assert list(built) == [arch] and built[arch]


@pytest.mark.skipif(not clang.available(), reason=f"no HIP-capable clang here ({clang.EXTRA})")
@pytest.mark.parametrize("file", FILES)
def test_converted_corpus_compiles_for_rocm(file):
    arch = clang.archs()[0]
    built = module(file).compile_for("rocm", arch)
    assert list(built) == [arch] and built[arch].startswith(b"\x7fELF")
