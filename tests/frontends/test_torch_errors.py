"""The torch frontend's failures, each one line that names the op or construct and the model's own file:line;
and `hamr compile model.pt2`, which keeps a saved program's dynamic axes dynamic."""

from __future__ import annotations

import inspect
import sys

import numpy as np
import pytest

import hamr
from hamr.errors import CustomOpError, ModelLoadError, UnsupportedOpError
from hamr.ops import CustomOp
from tests.helpers import hamr_cli, one_error_line, require


@pytest.fixture(scope="module")
def torch():
    require("onnxscript", "torch")
    return require("torch", "torch")


def line_of(function, text: str) -> str:
    """`file:line` of the line of `function` that contains `text`."""
    lines, first = inspect.getsourcelines(function)
    offset = next(i for i, line in enumerate(lines) if text in line)
    return f"{inspect.getsourcefile(function)}:{first + offset}"


def untranslatable_model(torch):
    @torch.library.custom_op("hamr_test_errors::no_translation", mutates_args=(), schema="(Tensor x) -> Tensor")
    def no_translation(x):
        return x.clone()

    no_translation.register_fake(lambda x: torch.empty_like(x))

    class Untranslatable(torch.nn.Module):
        def forward(self, x):
            y = x + 1
            return no_translation(y) * 2

    return Untranslatable(), Untranslatable.forward


def branching_model(torch):
    class Branching(torch.nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.export cannot capture it
                return x * 2
            return x - 1

    return Branching(), Branching.forward


def test_an_op_without_an_onnx_translation_is_one_line_naming_it_and_where(torch):
    model, forward = untranslatable_model(torch)
    with pytest.raises(UnsupportedOpError) as caught:
        hamr.compile(model, targets=["cpu"], example_args=(torch.randn(3),))
    message = str(caught.value)
    assert "\n" not in message
    assert "hamr_test_errors::no_translation" in message
    assert line_of(forward, "no_translation(y)") in message
    assert caught.value.ops == ["hamr_test_errors::no_translation"]


def test_data_dependent_control_flow_is_one_line_with_the_models_line(torch):
    model, forward = branching_model(torch)
    with pytest.raises(ModelLoadError) as caught:
        hamr.compile(model, targets=["cpu"], example_args=(torch.randn(3),))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("torch.export cannot capture the model: ")
    assert f"{line_of(forward, 'if x.sum() > 0')} (`if x.sum() > 0:" in message


def test_a_dynamic_axis_the_model_specialises_is_named(torch):
    from torch.export import Dim

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return x.reshape(2, 4)

    with pytest.raises(ModelLoadError, match=r"Constraints violated \(batch\).*specialized it to be a constant"):
        hamr.compile(Fixed(), targets=["cpu"], example_args=(torch.randn(2, 4),), dynamic_shapes=({0: Dim("batch")},))


def test_a_saved_program_compiles_from_the_command_line_with_its_dynamic_axes(torch, tmp_path):
    from torch.export import Dim

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.GELU(), torch.nn.Linear(5, 3)).eval()
    program = torch.export.export(model, (torch.randn(2, 6),), dynamic_shapes=({0: Dim("batch")},))
    torch.export.save(program, tmp_path / "mlp.pt2")

    result = hamr_cli("compile", tmp_path / "mlp.pt2", "-o", tmp_path / "mlp.hamr", "--target", "cpu")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr.lower(), result.stderr

    exe = hamr.load(tmp_path / "mlp.hamr")
    assert exe.name == "mlp"
    assert isinstance(exe.signature.inputs[0].shape[0], str)
    session = hamr.Session(exe, device="cpu")
    for batch in (1, 7):
        x = torch.randn(batch, 6)
        (got,) = session.run({exe.signature.inputs[0].name: x.numpy()}).values()
        with torch.no_grad():
            np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-3, atol=1e-4)


def test_a_corrupt_pt2_file_is_one_error_line(torch, tmp_path):
    bad = tmp_path / "broken.pt2"
    bad.write_bytes(b"PK\x03\x04 not really a zip archive")
    line = one_error_line(hamr_cli("compile", bad, "-o", tmp_path / "x.hamr", "--target", "cpu"))
    assert "broken.pt2 is not a torch.export program (.pt2)" in line


def test_without_torch_hamr_names_the_extra_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails as where it is not installed
    saved = tmp_path / "model.pt2"
    saved.write_bytes(b"")
    with pytest.raises(ModelLoadError) as caught:
        hamr.compile(saved, targets=["cpu"])
    assert str(caught.value) == "compiling a PyTorch model needs torch: pip install 'hamr[torch]'"


def test_example_args_are_refused_for_an_onnx_model(tmp_path):
    with pytest.raises(ModelLoadError, match="example_args and dynamic_shapes are for a torch.nn.Module"):
        hamr.compile(tmp_path / "model.onnx", example_args=(np.zeros(3),))


@pytest.mark.parametrize("name", ["no_namespace", "ns::", "ns::a::b", "ns::not an identifier"])
def test_a_custom_ops_torch_op_must_be_namespace_and_name(name):
    with pytest.raises(CustomOpError, match="torch_op must read 'namespace::name'"):
        CustomOp(domain="hamr_test", name="Op", reference=lambda x: x, torch_op=name)
