"""Shipped presets load, carry the paper's numbers and fit their stated budgets; malformed presets fail in one line."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import yaml

from advisor.presets import (
    PRESETS_DIR,
    SOURCES,
    load_preset,
    preset_from_dict,
    preset_from_study,
    preset_yaml,
    shipped_presets,
    write_preset,
)
from tests.tuner.memory.test_memory import SMOLLM2 as SMOLLM2_CONFIG
from tuner.data.encode import DATA_FILE, ExampleCounts
from tuner.errors import AdvisorError
from tuner.fullrun.handover import FinishedStudy
from tuner.memory.estimate import ModelShape, TrainSetup, estimate
from tuner.memory.report import fits
from tuner.memory.sizes import GIB, parse_size
from tuner.paper import MIN_IFT_EPOCHS, paper_learning_rate
from tuner.records import Recommendation
from tuner.settings import DataSettings, StudySettings, TrainBudget

SHIPPED = sorted(PRESETS_DIR.glob("*.yaml"))
PAPER_PRESETS = [path for path in SHIPPED if not path.stem.endswith("-measured")]
"""The paper's settings (the measured presets are our own runs')."""
# Llama-2-7B by hand (its config.json): the paper's base model, for which the GPU presets are sized.
LLAMA2_7B = ModelShape(
    hidden=4096, layers=32, heads=32, kv_heads=32, head_dim=128, intermediate=11008, vocab=32000, tied_embeddings=False
)
SMOLLM2 = ModelShape.from_config(SMOLLM2_CONFIG)


def test_the_shipped_presets_are_the_papers_per_task_and_budget_and_ours_measured_per_task():
    paper = ["code-24gib", "code-80gib", "code-cpu", "math-24gib", "math-80gib", "math-cpu"]
    measured = ["code-cpu-measured", "math-cpu-measured"]
    assert shipped_presets() == sorted(paper + measured)
    assert [name for name in shipped_presets() if load_preset(name).source == "measured"] == measured


@pytest.mark.parametrize("name", ["code-cpu-measured", "math-cpu-measured"])
def test_measured_presets_come_from_our_own_study_and_full_run_with_its_figures(name):
    preset = load_preset(name)
    assert (preset.source, preset.model, preset.hardware) == ("measured", "smollm2-135m-instruct", "cpu")
    header = (PRESETS_DIR / f"{name}.yaml").read_text(encoding="utf-8").split("\nname:")[0]
    assert "Measured by LoRA Advisor" in header and "paired" in header and "Reproduce: advisor tune" in header
    assert preset.extra["full_run"].startswith("runs/measured-") and preset.extra["change_noise"]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_preset_loads_with_a_commented_header(path):
    preset = load_preset(path.stem)
    assert preset == load_preset(str(path))
    assert preset.name == path.stem and preset.source in SOURCES and preset.notes
    header = path.read_text(encoding="utf-8").split("\nname:")[0]
    assert header.startswith("# ")
    if preset.source == "paper":
        assert "Biderman et al. 2024" in header and "Where the numbers come from" in header


@pytest.mark.parametrize("path", PAPER_PRESETS, ids=[p.stem for p in PAPER_PRESETS])
def test_shipped_presets_carry_the_papers_settings(path):
    preset = load_preset(path.stem)
    assert preset.source == "paper"
    assert preset.recipe.lora.targets == "all"  # All > MLP > Attention
    assert preset.recipe.lora.alpha == 2 * preset.recipe.lora.rank  # alpha = 2r
    assert preset.recipe.learning_rate == paper_learning_rate(preset.task, preset.recipe.lora.rank)
    assert preset.recipe.epochs >= MIN_IFT_EPOCHS and preset.recipe.warmup_ratio == 0.1


@pytest.mark.parametrize("name", ["code-24gib", "code-80gib", "math-24gib", "math-80gib"])
def test_gpu_presets_fit_their_budget_for_llama2_7b_in_bf16(name):
    preset = load_preset(name)
    budget = parse_size(preset.memory_budget or "")
    setup = TrainSetup(
        device="cuda",
        targets=preset.recipe.lora.targets,
        rank=preset.recipe.lora.rank,
        batch=preset.recipe.batch_size,
        seq_len=preset.recipe.seq_len,
    )
    total = estimate(LLAMA2_7B, setup).total
    # The CUDA estimate counts no runtime overhead (it was never calibrated on a GPU): keep a fifth of the budget free.
    assert total <= 0.8 * budget, f"{name}: {total / GIB:.2f} GiB of {preset.memory_budget}"
    assert preset.recipe.lora.rank == (256 if budget >= 80 * GIB else 16)


@pytest.mark.parametrize("name", ["code-24gib", "math-24gib"])
def test_rank_256_does_not_fit_the_small_budget_at_the_same_batch(name):
    preset = load_preset(name)
    setup = TrainSetup(
        device="cuda", targets="all", rank=256, batch=preset.recipe.batch_size, seq_len=preset.recipe.seq_len
    )
    assert not fits(LLAMA2_7B, setup, parse_size("24GiB"))


@pytest.mark.parametrize("name", ["code-cpu", "math-cpu"])
def test_cpu_presets_fit_their_ram_budget_for_smollm2(name):
    preset = load_preset(name)
    assert preset.model == "smollm2-135m-instruct" and "scaled for the 135M model" in preset.notes
    setup = TrainSetup(
        device="cpu",
        targets=preset.recipe.lora.targets,
        rank=preset.recipe.lora.rank,
        batch=preset.recipe.batch_size,
        seq_len=preset.recipe.seq_len,
    )
    assert estimate(SMOLLM2, setup).total <= parse_size(preset.memory_budget or "")


@pytest.mark.parametrize("name", shipped_presets())
def test_preset_yaml_round_trips_unchanged(name, tmp_path):
    preset = load_preset(name)
    assert preset_from_dict(yaml.safe_load(preset_yaml(preset))) == preset
    written = write_preset(preset, tmp_path / "copy.yaml", header="a copy\nfor the test")
    assert written.read_text(encoding="utf-8").startswith("# a copy\n# for the test\nname: ")
    reloaded = load_preset(str(written))
    assert reloaded == preset and preset_yaml(reloaded) == preset_yaml(preset)


def test_a_learning_rate_written_without_a_dot_still_reads_as_a_number(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-4 as the string '1e-4'.
    text = (PRESETS_DIR / "math-cpu.yaml").read_text(encoding="utf-8").replace("1.0e-04", "1e-4")
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    assert load_preset(str(tmp_path / "p.yaml")).recipe.learning_rate == 1e-4


GOOD = "name: mine\ntask: math\nlora: {rank: 16, alpha: 32, targets: all}\nlearning_rate: 1.0e-4\n"
COLUMNS = GOOD.replace("task: math", "task: custom") + "data_format: columns\n"


def test_a_variant_round_trips_and_a_preset_without_one_is_plain_lora(tmp_path):
    (tmp_path / "plain.yaml").write_text(GOOD, encoding="utf-8")
    plain = load_preset(str(tmp_path / "plain.yaml"))
    assert plain.recipe.lora.variant == "lora"
    assert "variant" not in preset_yaml(plain)  # written as presets from before variants were
    (tmp_path / "dora.yaml").write_text(GOOD.replace("targets: all", "targets: all, variant: dora"), encoding="utf-8")
    dora = load_preset(str(tmp_path / "dora.yaml"))
    assert dora.recipe.lora.variant == "dora"
    assert yaml.safe_load(preset_yaml(dora))["lora"]["variant"] == "dora"
    assert load_preset(str(write_preset(dora, tmp_path / "copy.yaml"))) == dora


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: mine\nlora: [unclosed\n", "is not valid YAML at line"),
        ("- just\n- a list\n", "expected a mapping of preset fields, got list"),
        (GOOD + "rnak: 16\n", "unknown field 'rnak'"),
        (GOOD.replace("rank: 16", "rank: 16, rnak: 8"), "unknown lora field 'rnak'"),
        (GOOD.replace("rank: 16", "rank: 0"), "rank must be at least 1, got 0"),
        (GOOD.replace("rank: 16", "rank: sixteen"), "rank must be a number, got 'sixteen'"),
        (GOOD.replace("rank: 16", "rank: 16.5"), "rank must be a whole number, got 16.5"),
        (GOOD.replace("1.0e-4", "fast"), "learning_rate must be a number, got 'fast'"),
        (GOOD.replace("targets: all", "targets: everything"), "targets must be one of attention, mlp, all"),
        (GOOD.replace("targets: all", "targets: all, variant: vera"), "unknown LoRA variant 'vera'"),
        (GOOD.replace("task: math", "task: poetry"), "task must be one of code, math, custom"),
        (GOOD + "memory_budget: lots\n", "not a memory size: 'lots'"),
        (GOOD.replace("learning_rate: 1.0e-4\n", ""), "missing field 'learning_rate'"),
        (GOOD + "hardware: tpu\n", "hardware must be one of gpu, cpu, got 'tpu'"),
        (GOOD + "gradient_checkpointing: sometimes\n", "gradient_checkpointing must be true or false"),
        (GOOD + "train_examples: 0\n", "train_examples must be at least 1, got 0"),
        (
            GOOD + "data_format: xml\n",
            "data_format must be one of messages, sharegpt, alpaca, prompt-completion, columns, text, got 'xml'",
        ),
        (GOOD + "regime: rl\n", "regime must be one of ift, cpt, got 'rl'"),
        (GOOD + "data_format: text\nregime: ift\n", "data_format text is plain text, with no responses to learn"),
        (COLUMNS + "columns: question\n", "columns must be the prompt and response column names, [PROMPT, RESPONSE]"),
        (COLUMNS + "columns: [question, ' ']\n", "columns must be the prompt and response column names"),
        (COLUMNS + "columns: [q, a, b]\n", "columns must be the prompt and response column names"),
        (COLUMNS + "columns: [question, 7]\n", "columns must be the prompt and response column names"),
        (
            GOOD + "data_format: messages\ncolumns: [question, answer]\n",
            "columns names the columns of data_format columns, not of messages",
        ),
    ],
)
def test_malformed_presets_give_one_clear_line(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AdvisorError) as raised:
        load_preset(str(path))
    assert message in str(raised.value) and str(path) in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("name", "hardware", "examples", "warmup"),
    # warm-up steps: 10 % of 4 epochs of ceil(examples / batch) steps
    [("math-cpu", "cpu", 7473, 748), ("code-cpu", "cpu", 6400, 640), ("math-24gib", "gpu", 395000, 79000)],
)
def test_shipped_presets_say_where_they_train_and_count_warm_up_steps_for_their_data(name, hardware, examples, warmup):
    preset = load_preset(name)
    assert (preset.hardware, preset.on_cpu, preset.gradient_checkpointing) == (hardware, hardware == "cpu", False)
    assert (preset.train_examples, preset.warmup_steps()) == (examples, warmup)
    assert preset_from_dict({**preset.to_dict(), "train_examples": None}).warmup_steps() is None


def test_an_unknown_preset_name_lists_the_shipped_ones():
    with pytest.raises(AdvisorError, match=r"no preset 'math-1gib'.*math-24gib"):
        load_preset("math-1gib")


def test_a_study_recommendation_becomes_a_study_preset():
    recommendation = {
        "task": "math",
        "model": "smollm2-135m-instruct",
        "trial": 3,
        "learning_rate": 3e-4,
        "rank": 64,
        "alpha": 128.0,
        "targets": "mlp",
        "epochs": 4,
        "run_dir": "runs/math",
    }
    recommendation.update(target_modules=["gate_proj"], objective={}, trials={}, evidence={})
    settings = StudySettings(
        model="smollm2-135m-instruct",
        data=DataSettings("math"),
        trials=4,
        budget=TrainBudget(train_tokens=4096, batch_size=8, seq_len=256, warmup_ratio=0.05),
        memory_budget=8 << 30,
    )
    study = FinishedStudy(
        Recommendation.from_json({**recommendation, "variant": "rslora"}), settings, Path("runs/math")
    )
    preset = preset_from_study(study)
    recipe = preset.recipe
    assert (recipe.lora.rank, recipe.lora.alpha, recipe.lora.targets, recipe.lora.variant) == (
        64,
        128.0,
        "mlp",
        "rslora",
    )
    assert (recipe.learning_rate, recipe.batch_size, recipe.seq_len, recipe.warmup_ratio) == (3e-4, 8, 256, 0.05)
    assert preset.source == "study" and preset.memory_budget == "8.00GiB" and "trial 3" in preset.notes
    assert preset.extra == {"run_dir": "runs/math", "trial": 3}


def test_data_format_and_regime_round_trip_and_are_written_only_where_known(tmp_path):
    (tmp_path / "plain.yaml").write_text(GOOD, encoding="utf-8")
    plain = load_preset(str(tmp_path / "plain.yaml"))
    assert (plain.data_format, plain.regime) == (None, "ift")
    assert "data_format" not in preset_yaml(plain) and "regime" not in preset_yaml(plain)  # as the shipped presets
    chat = replace(plain, data_format="sharegpt")
    assert yaml.safe_load(preset_yaml(chat))["data_format"] == "sharegpt" and "regime" not in preset_yaml(chat)
    for preset in (chat, replace(plain, data_format="text", regime="cpt"), replace(chat, regime="cpt")):
        assert load_preset(str(write_preset(preset, tmp_path / "copy.yaml"))) == preset
    (tmp_path / "text.yaml").write_text(GOOD + "data_format: text\n", encoding="utf-8")
    assert load_preset(str(tmp_path / "text.yaml")).regime == "cpt"  # plain text trains every token unless told


def test_a_studys_own_column_names_round_trip_and_are_written_only_where_set(tmp_path):
    (tmp_path / "default.yaml").write_text(COLUMNS, encoding="utf-8")
    default = load_preset(str(tmp_path / "default.yaml"))
    assert default.columns is None and "columns" not in yaml.safe_load(preset_yaml(default))
    named = replace(default, columns=("question", "answer"))
    assert yaml.safe_load(preset_yaml(named))["columns"] == ["question", "answer"]
    assert load_preset(str(write_preset(named, tmp_path / "copy.yaml"))) == named


def finished_study(run_dir: Path, data: DataSettings | None = None) -> FinishedStudy:
    """A finished math study on the built-in model, run in RUN_DIR (or one on DATA)."""
    recommendation = {
        "task": "math",
        "model": "smollm2-135m-instruct",
        "trial": 3,
        "learning_rate": 3e-4,
        "rank": 64,
        "alpha": 128.0,
        "targets": "all",
        "epochs": 4,
        "run_dir": str(run_dir),
        "target_modules": ["q_proj"],
        "objective": {},
        "trials": {},
        "evidence": {},
    }
    budget = TrainBudget(train_tokens=4096, batch_size=8, seq_len=256, warmup_ratio=0.05)
    data = data or DataSettings("math")
    settings = StudySettings(model="smollm2-135m-instruct", data=data, trials=4, budget=budget)
    return FinishedStudy(Recommendation.from_json(recommendation), settings, run_dir)


@pytest.mark.parametrize(("data_format", "regime"), [("sharegpt", "ift"), ("text", "cpt"), ("messages", "cpt")])
def test_a_study_preset_takes_its_data_format_and_regime_from_the_run_directorys_data_json(
    tmp_path, data_format, regime
):
    before = preset_from_study(finished_study(tmp_path))  # a study from before studies wrote data.json
    assert (before.data_format, before.regime) == (None, "ift")
    counts = ExampleCounts(data_format, regime, 10, 0, 10, 0, 0, 1000, 400, 0)
    (tmp_path / DATA_FILE).write_text(json.dumps(asdict(counts)), encoding="utf-8")
    preset = preset_from_study(finished_study(tmp_path))
    assert (preset.data_format, preset.regime) == (data_format, regime)
    assert preset_from_dict(yaml.safe_load(preset_yaml(preset))) == preset


@pytest.mark.parametrize(
    ("data_format", "prompt_column", "response_column", "columns"),
    [
        ("columns", "question", "answer", ("question", "answer")),
        ("columns", "prompt", "answer", ("prompt", "answer")),
        ("columns", "prompt", "response", None),  # the defaults: written as before
        ("messages", "question", "answer", None),  # the columns of another format's data: not its columns
    ],
)
def test_a_study_preset_takes_the_column_names_its_study_read(
    tmp_path, data_format, prompt_column, response_column, columns
):
    data = DataSettings("custom", "qa.jsonl", prompt_column, response_column, format=data_format)
    counts = ExampleCounts(data_format, "ift", 10, 0, 10, 0, 0, 1000, 400, 0)
    (tmp_path / DATA_FILE).write_text(json.dumps(asdict(counts)), encoding="utf-8")
    preset = preset_from_study(finished_study(tmp_path, data))
    assert (preset.data_format, preset.columns) == (data_format, columns)
    assert preset_from_dict(yaml.safe_load(preset_yaml(preset))) == preset


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "cannot read"),
        ("[]", "does not hold a mapping: not a study's record of its data"),
        ('{"format": "messages"}', "has no 'regime'"),
        ('{"format": "xml", "regime": "ift"}', "format 'xml' with regime 'ift' is not one known"),
    ],
)
def test_a_malformed_data_json_gives_one_clear_line(tmp_path, text, message):
    (tmp_path / DATA_FILE).write_text(text, encoding="utf-8")
    with pytest.raises(AdvisorError) as raised:
        preset_from_study(finished_study(tmp_path))
    assert message in str(raised.value) and DATA_FILE in str(raised.value) and "\n" not in str(raised.value)
