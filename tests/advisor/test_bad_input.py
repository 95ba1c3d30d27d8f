"""Every mistake a user types: one line on stderr, exit code 2, nothing written or damaged, before any model loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tuner.rundir import check_out_dir

HIDDEN, CONTEXT = 32, 1024


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model directory with only its config.json: the checks read nothing else, so no weights are needed."""
    directory = tmp_path / "model"
    directory.mkdir()
    config = {
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": CONTEXT,
        "vocab_size": 512,
        "tie_word_embeddings": True,
    }
    (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run `advisor ARGS`, check it ends with one line and exit code 2, and return that line."""
    code, out, err = run_cli(capsys, *args)
    assert code == 2, (code, out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def tree(directory: Path) -> dict[str, bytes | None]:
    """Every path under a directory and each file's bytes: what a refused command must leave as it was."""
    return {str(p.relative_to(directory)): p.read_bytes() if p.is_file() else None for p in directory.rglob("*")}


def study_dir(directory: Path) -> Path:
    """A study's run directory as tuner/study/run.py leaves it (its markers; no study ran)."""
    (directory / "trials").mkdir(parents=True)
    (directory / "study.db").write_bytes(b"SQLite format 3\x00")
    (directory / "settings.json").write_text("{}\n", encoding="utf-8")
    return directory


def training_run_dir(directory: Path) -> Path:
    """A training run's directory as tuner/fullrun/train.py leaves it from its start."""
    (directory / "checkpoints").mkdir(parents=True)
    (directory / "train_settings.json").write_text("{}\n", encoding="utf-8")
    return directory


def adapter_dir(directory: Path) -> Path:
    """A trained PEFT adapter: its config and its weights."""
    directory.mkdir(parents=True)
    (directory / "adapter_config.json").write_text('{"r": 4, "lora_alpha": 8}\n', encoding="utf-8")
    (directory / "adapter_model.safetensors").write_bytes(b"trained weights")
    return directory


# Sizes: 0 and negatives are no default, and absurd sizes are refused by argparse before anything else.


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["tune", "--batch-size", "0"],
            "advisor tune: error: argument --batch-size: must be between 1 and 65,536, got 0",
        ),
        (["tune", "--seq-len", "0"], "advisor tune: error: argument --seq-len: must be between 1 and 1,048,576, got 0"),
        (["tune", "--seq-len", "-512"], "argument --seq-len: must be between 1 and 1,048,576, got -512"),
        (["tune", "--trials", "0"], "advisor tune: error: argument --trials: must be at least 1, got 0"),
        (["tune", "--trial-tokens", "-1"], "advisor tune: error: argument --trial-tokens: must be at least 1, got -1"),
        (["tune", "--batch-size", "100000"], "argument --batch-size: must be between 1 and 65,536, got 100000"),
        (["train", "--task", "math", "--batch-size", "0"], "advisor train: error: argument --batch-size: must be"),
        (["train", "--task", "math", "--seq-len", "0"], "advisor train: error: argument --seq-len: must be between"),
        (["train", "--task", "math", "--alpha", "0"], "advisor train: error: argument --alpha: must be above 0, got 0"),
        (["memory", "--seq", "99999999999"], "advisor memory: error: argument --seq: must be between 1 and 1,048,576"),
        (["memory", "--batch", "70000"], "advisor memory: error: argument --batch: must be between 1 and 65,536"),
    ],
)
def test_zero_negative_and_absurd_sizes_are_argument_errors(capsys, tmp_path, args, message):
    out = tmp_path / "out"
    line = refused(capsys, *args, *(["--out", str(out)] if args[0] != "memory" else []))
    assert line.startswith(message) or message in line, line
    assert not out.exists()


def test_score_items_0_still_means_no_scoring():
    from advisor.cli import build_parser

    assert build_parser().parse_args(["tune", "--score-items", "0"]).score_items == 0


@pytest.mark.parametrize(
    "args",
    [
        ["memory", "--budget", "200TiB"],
        ["memory", "--memory-budget", "200TiB"],
        ["tune", "--memory-budget", "101TiB"],
        ["train", "--task", "math", "--memory-budget", "1000000GiB"],
    ],
)
def test_a_memory_budget_above_100_tib_is_refused(capsys, tmp_path, model_dir, args):
    out = tmp_path / "out"
    where = ["--out", str(out)] if args[0] != "memory" else []
    line = refused(capsys, *args, "--model", str(model_dir), *where)
    assert line.startswith("advisor: error: ") and "is above 100 TiB" in line, line
    assert not out.exists()


# The model's own limits, read from its config.json before the tokenizer, the data or the weights load.


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--task", "math", "--rank", "64"],
        ["memory", "--rank", "64"],
    ],
)
def test_a_rank_above_the_hidden_size_names_both(capsys, tmp_path, model_dir, args):
    out = tmp_path / "out"
    where = ["--out", str(out)] if args[0] != "memory" else []
    line = refused(capsys, *args, "--model", str(model_dir), *where)
    assert line == (
        f"advisor: error: LoRA rank 64 is above {model_dir}'s hidden size of {HIDDEN}: "
        "an adapter's rank is at most the width of the layers it adapts"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["tune", "--task", "math", "--seq-len", "2048", "--trial-tokens", "100000"],
        ["train", "--task", "math", "--seq-len", "2048"],
        ["memory", "--seq", "2048"],
    ],
)
def test_rows_longer_than_the_context_name_both(capsys, tmp_path, model_dir, args):
    out = tmp_path / "out"
    where = ["--out", str(out)] if args[0] != "memory" else []
    line = refused(capsys, *args, "--model", str(model_dir), *where)
    assert line == (
        f"advisor: error: rows of 2,048 tokens are longer than {model_dir}'s context of {CONTEXT:,} tokens "
        "(max_position_embeddings): give a shorter row length"
    )
    assert not out.exists()


def test_the_built_in_gguf_models_limits_come_from_its_header_without_loading_it():
    from tuner.errors import AdvisorError
    from tuner.models.limits import ModelLimits, model_limits
    from tuner.models.load import BUILTIN_MODELS, DEFAULT_MODEL, builtin_gguf

    try:
        builtin_gguf(BUILTIN_MODELS[DEFAULT_MODEL])
    except AdvisorError:
        pytest.skip("the built-in model's wheel is not installed")
    assert model_limits(DEFAULT_MODEL) == ModelLimits(hidden=576, context=8192)  # SmolLM2-135M's config


# --out: writable or creatable, a directory, and not another kind of run's; checked before anything loads.

WRITERS = {
    "tune": ["tune", "--task", "math"],
    "train": ["train", "--task", "math"],
    "export": ["export", "--preset", "math-24gib", "--format", "peft"],
    "report": ["report", "--storage", "sqlite:///{tmp}/none.db", "--study", "s"],
    "spectrum": ["spectrum", "--adapter", "{adapter}"],
}


def writer_args(command: str, tmp_path: Path) -> list[str]:
    adapter = tmp_path / "source-adapter"
    if command == "spectrum" and not adapter.exists():
        adapter_dir(adapter)
    return [arg.format(tmp=tmp_path, adapter=adapter) for arg in WRITERS[command]]


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_an_out_that_is_a_file_is_refused(capsys, tmp_path, command):
    taken = tmp_path / "taken"
    taken.write_text("a file, not a directory\n")
    line = refused(capsys, *writer_args(command, tmp_path), "--out", str(taken))
    assert line == f"advisor: error: --out {taken} is a file, not a directory"
    assert taken.read_text() == "a file, not a directory\n"


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_an_out_below_a_file_is_refused(capsys, tmp_path, command):
    (tmp_path / "taken").write_text("a file\n")
    out = tmp_path / "taken" / "run"
    line = refused(capsys, *writer_args(command, tmp_path), "--out", str(out))
    assert line == f"advisor: error: --out {out} cannot be created: {tmp_path / 'taken'} is a file, not a directory"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc here")
@pytest.mark.parametrize("command", sorted(WRITERS))
def test_an_out_that_cannot_be_created_is_refused(capsys, tmp_path, command):
    line = refused(capsys, *writer_args(command, tmp_path), "--out", "/proc/advisor-run")
    assert line.startswith("advisor: error: --out /proc/advisor-run cannot be created: /proc takes no new directories")


def test_train_refuses_a_studys_run_directory(capsys, tmp_path):
    run = study_dir(tmp_path / "study")
    before = tree(run)
    line = refused(capsys, "train", "--task", "math", "--out", str(run))
    assert line == (
        f"advisor: error: --out {run} holds a study's run (settings.json, study.db, trials/): "
        "advisor train writes a training run; choose another --out"
    )
    assert tree(run) == before


@pytest.mark.parametrize("command", ["tune", "report"])
def test_a_study_refuses_a_training_runs_directory(capsys, tmp_path, command):
    run = training_run_dir(tmp_path / "train")
    before = tree(run)
    line = refused(capsys, *writer_args(command, tmp_path), "--out", str(run))
    assert line == (
        f"advisor: error: --out {run} holds a training run (checkpoints/, train_settings.json): "
        "a study writes its own run directory; choose another --out"
    )
    assert tree(run) == before


def test_nothing_is_left_behind_by_the_check():
    """The creatability probe makes a scratch directory and removes it at once."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        check_out_dir(Path(scratch) / "a" / "b", "study")
        check_out_dir(Path(scratch), "export")
        assert list(Path(scratch).iterdir()) == []


# export: nothing overwritten without --force.


@pytest.mark.parametrize(
    ("make", "held"),
    [
        (adapter_dir, "a trained adapter (adapter_config.json, adapter_model.safetensors)"),
        (study_dir, "a study's run (settings.json, study.db, trials/)"),
        (training_run_dir, "a training run (checkpoints/, train_settings.json)"),
    ],
)
def test_export_refuses_a_directory_holding_an_adapter_or_a_run(capsys, tmp_path, make, held):
    out = make(tmp_path / "out")
    before = tree(out)
    line = refused(capsys, "export", "--preset", "math-24gib", "--format", "peft", "--out", str(out))
    assert (
        line
        == f"advisor: error: --out {out} holds {held}: pass --force to export into it anyway, or choose another --out"
    )
    assert tree(out) == before


def test_export_refuses_an_earlier_export_and_force_overwrites_it(capsys, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "export", "--preset", "code-cpu", "--format", "axolotl", "--out", str(out))
    assert code == 0, err
    before = tree(out)
    line = refused(capsys, "export", "--preset", "math-24gib", "--format", "axolotl", "--out", str(out))
    assert line.startswith(f"advisor: error: --out {out} holds an export (preset.yaml): pass --force")
    assert tree(out) == before
    code, _, err = run_cli(
        capsys, "export", "--preset", "math-24gib", "--format", "axolotl", "--out", str(out), "--force"
    )
    assert code == 0 and err == ""
    assert "name: math-24gib" in (out / "preset.yaml").read_text()


def test_export_with_force_writes_beside_a_trained_adapter(capsys, tmp_path):
    out = adapter_dir(tmp_path / "out")
    code, _, err = run_cli(
        capsys, "export", "--preset", "math-24gib", "--format", "axolotl", "--out", str(out), "--force"
    )
    assert code == 0 and err == ""
    assert (out / "adapter_model.safetensors").read_bytes() == b"trained weights"
    assert (out / "axolotl.yaml").is_file()


# Fast: refused before torch is even imported.


def test_refusals_come_before_torch_is_imported(tmp_path, model_dir):
    study = study_dir(tmp_path / "study")
    adapter = adapter_dir(tmp_path / "adapter")
    cases = [
        ["tune", "--batch-size", "0"],
        ["memory", "--seq", "99999999999"],
        ["train", "--task", "math", "--out", str(study)],
        ["tune", "--out", str(training_run_dir(tmp_path / "train"))],
        ["export", "--preset", "math-24gib", "--format", "peft", "--out", str(adapter)],
        ["train", "--task", "math", "--model", str(model_dir), "--rank", "64", "--out", str(tmp_path / "o")],
        [
            "tune",
            "--model",
            str(model_dir),
            "--seq-len",
            "2048",
            "--trial-tokens",
            "9999999",
            "--out",
            str(tmp_path / "o"),
        ],
    ]
    probe = (
        "import sys\nfrom advisor.cli import main\ncodes = []\n"
        f"for argv in {cases!r}:\n"
        "    try:\n        codes.append(main(argv))\n"
        "    except SystemExit as exit_:\n        codes.append(exit_.code)\n"
        "print(codes, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == f"{[2] * len(cases)} False False", result.stderr
    assert len(result.stderr.strip().splitlines()) == len(cases), result.stderr
    assert not (tmp_path / "o").exists()
