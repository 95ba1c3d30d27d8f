"""Compiled decoder layers: a compiled trial trains as an eager one does, and the run decides to compile only when
the steps left repay the warm-up."""

from __future__ import annotations

import pytest

from tuner.errors import AdvisorError
from tuner.training.compilation import COMPILE_VARIABLE, COSTS, CompileCost, compile_mode, compiler_missing


def test_compiling_repays_only_long_enough_runs():
    cost = CompileCost(warmup_seconds=30.0, step_saving=0.1, margin=2.0)
    assert cost.break_even_seconds() == pytest.approx(600.0)
    assert cost.repays(remaining_steps=600, step_seconds=1.0)
    assert not cost.repays(remaining_steps=599, step_seconds=1.0)
    # The quick start's trials (12 steps of about 5 s on the CPU) are far from repaying it.
    assert not COSTS["cpu"].repays(remaining_steps=10, step_seconds=5.0)
    assert COSTS["cpu"].repays(remaining_steps=1000, step_seconds=5.0)


def test_the_mode_comes_from_the_environment_and_bad_values_say_so():
    assert compile_mode({}) == "auto"
    assert compile_mode({COMPILE_VARIABLE: " ON "}) == "on"
    assert compile_mode({COMPILE_VARIABLE: "off"}) == "off"
    with pytest.raises(AdvisorError, match="ADVISOR_COMPILE='sometimes' is not one of auto, on, off"):
        compile_mode({COMPILE_VARIABLE: "sometimes"})


def test_a_missing_compiler_is_named(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    assert compiler_missing("cpu") == "no C++ compiler (no-such-compiler-here) for inductor's CPU kernels"
    assert compiler_missing("mps") == "torch.compile is not set up for mps"
    monkeypatch.delenv("CXX")
    if compiler_missing("cpu") is None:  # with the compiler, the Python headers are looked for too
        monkeypatch.setattr("sysconfig.get_paths", lambda: {"include": "/no/such/include"})
        assert compiler_missing("cpu") == "no Python headers (/no/such/include/Python.h) for inductor's CPU kernels"


@pytest.mark.parametrize("command", ["train", "tune"])
def test_a_bad_setting_stops_the_command_before_anything_loads(capsys, monkeypatch, tmp_path, command):
    from tests.conftest import run_cli

    monkeypatch.setenv(COMPILE_VARIABLE, "maybe")
    code, out, err = run_cli(capsys, command, "--task", "math", "--out", str(tmp_path / "run"))
    assert code == 2 and out == ""
    assert err == "advisor: error: ADVISOR_COMPILE='maybe' is not one of auto, on, off\n"
    assert not (tmp_path / "run").exists()


torch = pytest.importorskip("torch")

from tests.tuner.training import test_trial  # noqa: E402
from tuner.settings import LoraSettings  # noqa: E402
from tuner.training.compilation import LayerCompiler, decoder_layers  # noqa: E402
from tuner.training.trial import heldout_loss, run_trial  # noqa: E402

setup = test_trial.setup
"""The tiny model, GSM8K rows, the runtime and the start loss, as the trial runner's tests have them."""


def test_the_decoder_layers_are_found(setup):
    model = setup[0]
    layers = decoder_layers(model)
    assert layers and layers == list(model.model.layers)


@pytest.mark.skipif(compiler_missing("cpu") is not None, reason="torch.compile needs a C++ compiler on the CPU")
@pytest.mark.parametrize("lora", [LoraSettings(16, 32, "all"), None], ids=["lora", "full"])
def test_a_compiled_trial_gives_the_eager_trials_losses(setup, lora):
    model, data, runtime, start = setup
    scored = {}

    def score(peft_model, result):  # scoring runs with gradients off: eager layers, nothing recompiles
        scored["loss"] = heldout_loss(peft_model, data.heldout, 4, runtime)

    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    eager, compiled = (
        run_trial(
            model, data, lora, 1e-2, test_trial.SHORT, runtime, start_loss=start, compile_mode=mode, on_trained=score
        )
        for mode in ("off", "on")
    )
    assert eager.compiled_after is None and compiled.compiled_after == 0
    assert counters["stats"]["unique_graphs"] > graphs  # dynamo made graphs: it did not fall back to eager
    assert [s for s, _ in compiled.train_curve] == [s for s, _ in eager.train_curve] == list(range(1, 5))
    for (_, want), (_, got) in zip(eager.train_curve, compiled.train_curve, strict=True):
        assert got == pytest.approx(want, rel=1e-4)
    assert compiled.evaluations[-1][1] == pytest.approx(eager.evaluations[-1][1], rel=1e-4)
    assert all("forward" not in vars(layer) for layer in decoder_layers(model))  # eager again afterwards
    assert heldout_loss(model, data.heldout, 4, runtime) == pytest.approx(start, abs=1e-5)


def test_auto_compiles_after_timing_only_when_the_rest_repays(setup, monkeypatch):
    model = setup[0]
    compiled = []
    monkeypatch.setattr(LayerCompiler, "_compile", lambda self: compiled.append(True))
    compiler = LayerCompiler(model, "cpu", "auto")
    if compiler.decided:
        pytest.skip("torch.compile needs a C++ compiler on the CPU")
    assert compiler.step_done(1, 100.0, 1000) is None and not compiled  # the first step only warms up
    assert compiler.step_done(2, 0.01, 1000) is None and not compiled  # 10 s left: no
    assert compiler.step_done(3, 100.0, 1000) is None and not compiled  # decided once
    compiler = LayerCompiler(model, "cpu", "auto")
    message = compiler.step_done(2, 5.0, 1000)
    assert compiled and message is not None and message.startswith("compiling the 2 decoder layers: 998 steps left")
    assert LayerCompiler(model, "cpu", "off").decided
    compiled.clear()
    on = LayerCompiler(model, "cpu", "on")  # compiled from the start, once
    assert compiled == [True] and on.step_done(2, 5.0, 1000) is None and compiled == [True]


def test_on_without_a_compiler_is_one_clear_error(setup, monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    with pytest.raises(AdvisorError, match="ADVISOR_COMPILE=on but no C\\+\\+ compiler"):
        LayerCompiler(setup[0], "cpu", "on")
