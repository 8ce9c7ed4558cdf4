"""Real PyTorch architectures, small and with random weights, for the torch frontend's tests and bench/torch_anchors.py.

Each model comes with its example inputs, its ``dynamic_shapes`` for torch.export, and the inputs it is
checked on: for the models with dynamic axes, two batch sizes and two sequence lengths run by one compiled
executable. Nothing is downloaded (torchvision does not import beside torch's CPU wheel: the blocks are
written out here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.export import Dim

import hamr.ops

BATCH, SEQ = Dim("batch", min=1, max=64), Dim("seq", min=2, max=128)


@dataclass
class TorchCase:
    name: str
    module: nn.Module
    example: tuple[torch.Tensor, ...]
    dynamic_shapes: tuple | None
    checks: list[tuple[torch.Tensor, ...]] = field(default_factory=list)

    def eager(self, inputs: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
        with torch.no_grad():
            out = self.module(*inputs)
        return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


# -- ResNet ------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + identity)


class ResNet(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        self.layers = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 16, stride=2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


# -- MobileNet (v3-style inverted residuals) -----------------------------------------------------------


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x):
        scale = nn.functional.adaptive_avg_pool2d(x, 1)
        scale = nn.functional.hardsigmoid(self.expand(torch.relu(self.reduce(scale))))
        return x * scale


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, hidden: int, cout: int, stride: int):
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.Hardswish())
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.Hardswish()
        )
        self.se = SqueezeExcite(hidden, max(hidden // 4, 8))
        self.project = nn.Sequential(nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return x + out if self.residual else out


class MobileNet(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.blocks = nn.Sequential(InvertedResidual(16, 32, 16, 1), InvertedResidual(16, 48, 24, 2))
        self.head = nn.Sequential(nn.Linear(24, 32), nn.Hardswish(), nn.Linear(32, classes))

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


# -- a transformer encoder with a padding mask ----------------------------------------------------------


class Encoder(nn.Module):
    def __init__(self, d_model: int = 32, heads: int = 4):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.out = nn.Linear(d_model, 8)

    def forward(self, x, padding):
        return self.out(self.encoder(x, src_key_padding_mask=padding))


def padding_mask(batch: int, seq: int, seed: int) -> torch.Tensor:
    """True where a position is padding; every sequence keeps at least its first half."""
    lengths = torch.randint(seq // 2 + 1, seq + 1, (batch,), generator=torch.Generator().manual_seed(seed))
    return torch.arange(seq)[None, :] >= lengths[:, None]


# -- GRUs: the nn.GRU op, a GRUCell unrolled, a GRUCell under torch's scan -------------------------------


class GRUModel(nn.Module):
    def __init__(self, features: int = 8, hidden: int = 16):
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 4)

    def forward(self, x):
        states, last = self.gru(x)
        return self.out(states), last


class UnrolledGRUCell(nn.Module):
    """A python loop over a fixed sequence length: torch.export unrolls it."""

    def __init__(self, features: int = 8, hidden: int = 16):
        super().__init__()
        self.cell = nn.GRUCell(features, hidden)
        self.hidden = hidden
        self.out = nn.Linear(hidden, 4)

    def forward(self, x):
        h = x.new_zeros(x.shape[0], self.hidden)
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
        return self.out(h)


class ScannedGRUCell(UnrolledGRUCell):
    """The loop as torch's higher-order scan (an ONNX Scan): the sequence length stays dynamic."""

    def forward(self, x):
        from torch._higher_order_ops.scan import scan

        def step(h, x_t):
            h = self.cell(x_t, h)
            return h, h.clone()

        h0 = x.new_zeros(x.shape[0], self.hidden)
        last, states = scan(step, h0, x.transpose(0, 1))
        return self.out(states.transpose(0, 1)), last


# -- a torch.library op that maps to a hamr custom op ---------------------------------------------------


@torch.library.custom_op("hamr_test::scaled_softsign", mutates_args=())
def scaled_softsign(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return alpha * x / (1 + x.abs())


@scaled_softsign.register_fake
def _(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.empty_like(x)


SCALED_SOFTSIGN = hamr.ops.CustomOp(
    domain="hamr_test",
    name="ScaledSoftsign",
    torch_op="hamr_test::scaled_softsign",
    reference=lambda x, alpha=1.0: (alpha * x / (1 + np.abs(x))).astype(x.dtype),
    attributes={"alpha": 1.0},
    kernels={target: "{alpha} * {in0} / (1 + fabs({in0}))" for target in ("cpu", "opencl")},
)


class CustomOpModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(8, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, x):
        return self.out(scaled_softsign(self.inp(x), 0.5))


def register_custom_ops() -> None:
    hamr.ops.register(SCALED_SOFTSIGN, replace=True)


# -- the cases ----------------------------------------------------------------------------------------


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _seeded(build: Callable[[], nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    module = build().eval()
    for m in module.modules():  # batch norms with statistics of their own, not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    return module


def _sequences(batch_seq: list[tuple[int, int]], features: int = 8) -> list[tuple[torch.Tensor, ...]]:
    return [(_randn(b, s, features, seed=10 + i),) for i, (b, s) in enumerate(batch_seq)]


def resnet() -> TorchCase:
    images = [(_randn(b, 3, 32, 32, seed=b),) for b in (2, 5)]
    return TorchCase("resnet", _seeded(ResNet), images[0], ({0: BATCH},), images)


def mobilenet() -> TorchCase:
    images = [(_randn(b, 3, 32, 32, seed=b),) for b in (2, 3)]
    return TorchCase("mobilenet", _seeded(MobileNet), images[0], ({0: BATCH},), images)


def encoder() -> TorchCase:
    checks = [(_randn(b, s, 32, seed=i), padding_mask(b, s, seed=i)) for i, (b, s) in enumerate([(2, 7), (3, 12)])]
    shapes = ({0: BATCH, 1: SEQ}, {0: BATCH, 1: SEQ})
    return TorchCase("transformer encoder", _seeded(Encoder), checks[0], shapes, checks)


def gru() -> TorchCase:
    checks = _sequences([(2, 5), (3, 9)])
    return TorchCase("nn.GRU", _seeded(GRUModel), checks[0], ({0: BATCH, 1: SEQ},), checks)


def gru_cell_unrolled() -> TorchCase:
    checks = _sequences([(2, 6), (5, 6)])
    return TorchCase("GRUCell unrolled", _seeded(UnrolledGRUCell), checks[0], ({0: BATCH},), checks)


def gru_cell_scan() -> TorchCase:
    checks = _sequences([(2, 5), (3, 9)])
    return TorchCase("GRUCell under scan", _seeded(ScannedGRUCell), checks[0], ({0: BATCH, 1: SEQ},), checks)


def custom_op() -> TorchCase:
    register_custom_ops()
    checks = [(_randn(b, 8, seed=b),) for b in (2, 5)]
    return TorchCase("torch.library op", _seeded(CustomOpModel), checks[0], ({0: BATCH},), checks)


CASES: dict[str, Callable[[], TorchCase]] = {
    "resnet": resnet,
    "mobilenet": mobilenet,
    "encoder": encoder,
    "gru": gru,
    "gru_cell_unrolled": gru_cell_unrolled,
    "gru_cell_scan": gru_cell_scan,
    "custom_op": custom_op,
}
