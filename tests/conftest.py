import warnings

import pytest

warnings.filterwarnings("ignore", category=RuntimeWarning, module="onnx.backend.test.case")


def require(module: str):
    """Import an optional package or skip the test with the reason."""
    return pytest.importorskip(module, reason=f"{module} is not installed (pip install -e '.[test]')")
