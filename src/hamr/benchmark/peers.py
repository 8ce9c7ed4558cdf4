"""The runtimes `hamr bench` times beside hamr: onnxruntime, and IREE (llvm-cpu, host CPU) where it imports the model."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hamr.errors import HamrError

PEER_NAMES = ("onnxruntime", "iree")
IREE_MIN_OPSET = 17  # the IREE importer lowers older BatchNormalization and friends only after an upgrade


class PeerUnavailable(HamrError):
    """The peer cannot run this model here (not installed, or it refuses the model); the message says why."""


@dataclass
class Peer:
    name: str  # with its version
    run: Callable[[dict[str, np.ndarray]], object]
    prepare_s: float  # import and compile (IREE), or session creation (onnxruntime)
    keep: object = None  # what must live as long as the peer (IREE's temporary build folder)


def make_peer(name: str, model: Path, threads: int, cache_dir: Path | None = None) -> Peer:
    if name == "onnxruntime":
        return onnxruntime_peer(model, threads)
    if name == "iree":
        return iree_peer(model, threads, cache_dir)
    raise HamrError(f"unknown peer '{name}'; supported: {', '.join(PEER_NAMES)}")


def onnxruntime_peer(model: Path, threads: int) -> Peer:
    try:
        import onnxruntime as ort
    except ImportError:
        raise PeerUnavailable("onnxruntime is not installed (pip install onnxruntime)") from None
    start = time.perf_counter()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return Peer(f"onnxruntime {ort.__version__}", lambda feeds: session.run(None, feeds), time.perf_counter() - start)


def iree_peer(model: Path, threads: int, cache_dir: Path | None = None) -> Peer:
    from importlib.metadata import version as installed_version

    try:
        import iree.compiler  # noqa: F401
        import iree.runtime as rt
    except ImportError:
        raise PeerUnavailable("IREE is not installed (pip install iree-base-compiler iree-base-runtime)") from None
    version = installed_version("iree-base-compiler")
    start = time.perf_counter()
    scratch = None if cache_dir else tempfile.TemporaryDirectory(prefix="hamr-iree-")
    vmfb = _iree_module(model, version, Path(scratch.name) if scratch else cache_dir)
    rt.flags.parse_flags(f"--task_topology_group_count={threads}")
    config = rt.Config("local-task")
    vm_module = rt.VmModule.mmap(config.vm_instance, str(vmfb))
    context = rt.SystemContext(config=config, vm_modules=[vm_module])
    entry = next(f for f in vm_module.function_names if not f.endswith("$async") and not f.startswith("__"))
    function = context.modules[vm_module.name][entry]
    order = _graph_inputs(model)

    def run(feeds: dict[str, np.ndarray]):
        out = function(*(feeds[name] for name in order))
        return [o.to_host() for o in out] if isinstance(out, (list, tuple)) else [out.to_host()]

    return Peer(f"IREE {version} (llvm-cpu, host)", run, time.perf_counter() - start, keep=scratch)


def _iree_module(model: Path, version: str, where: Path) -> Path:
    """The model imported by IREE's ONNX importer and compiled for llvm-cpu on this CPU (cached by content)."""
    from iree.compiler import compile_file
    from iree.compiler.tools.binaries import CompilerToolError

    digest = hashlib.sha256(model.read_bytes() + version.encode()).hexdigest()[:20]
    where.mkdir(parents=True, exist_ok=True)
    vmfb = where / f"{digest}.vmfb"
    if vmfb.is_file():
        return vmfb
    mlir = where / f"{digest}.mlir"
    command = [sys.executable, "-m", "iree.compiler.tools.import_onnx", str(model), "-o", str(mlir)]
    if _default_opset(model) < IREE_MIN_OPSET:
        command += ["--opset-version", str(IREE_MIN_OPSET)]
    imported = subprocess.run(command, capture_output=True, text=True)
    if imported.returncode != 0:
        raise PeerUnavailable(f"IREE's ONNX importer refused it: {_first_error(imported.stderr)}")
    try:
        compile_file(
            str(mlir),
            output_file=str(vmfb),
            target_backends=["llvm-cpu"],
            extra_args=["--iree-llvmcpu-target-cpu=host"],
        )
    except CompilerToolError as exc:
        raise PeerUnavailable(f"iree-compile refused it: {_first_error(str(exc))}") from None
    finally:
        mlir.unlink(missing_ok=True)
    return vmfb


def _default_opset(model: Path) -> int:
    import onnx

    proto = onnx.load(model, load_external_data=False)
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _graph_inputs(model: Path) -> list[str]:
    import onnx

    graph = onnx.load(model, load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    return [i.name for i in graph.input if i.name not in weights]


def _first_error(text: str) -> str:
    """The compiler's first diagnostic, without its source location, naming the ONNX op when it says which."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = next((line.split("error:", 1)[1].strip() for line in lines if "error:" in line), None)
    line = line or next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "no message")
    op = re.search(r'name = "(onnx\.\w+)"', line)
    line = re.sub(r"(explicitly marked illegal):.*", r"\1", line)
    return (f"{line} ({op.group(1)})" if op else line)[:200]
