"""Shared fixtures: the local data mirror, an isolated cache, a tiny random Llama built in the test, and a fresh
PostgreSQL database per test where a server is reachable."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def mirror_dir() -> Path | None:
    """The shared data mirror: ADVISOR_DATA_DIR, else ../shared/data beside the checkout."""
    for candidate in (os.environ.get("ADVISOR_DATA_DIR"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "gsm8k" / "train.jsonl").is_file():
            return Path(candidate).resolve()
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = mirror_dir()
    if found is None:
        pytest.skip("the shared data mirror (../shared/data or ADVISOR_DATA_DIR) is not here")
    return found


# The hub is unreachable here: fail fast instead of retrying for half a minute. Set before
# huggingface_hub is imported, which reads these once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("ADVISOR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "advisor-cache"))


POSTGRES_ENV = "ADVISOR_TEST_POSTGRES"
"""The URL of a PostgreSQL database the tests may create databases from (.ci/postgres sets it up)."""


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh PostgreSQL database for one test, dropped after it. Without a reachable server the test
    is skipped with one line saying why, unless CI is set: then it fails (CI starts a server)."""
    import sqlalchemy

    from tuner.study.state import scratch_database

    base = os.environ.get(POSTGRES_ENV)
    problem = None
    if not base:
        problem = f"{POSTGRES_ENV} is not set: no PostgreSQL server to test against (.ci/postgres starts one)"
    else:
        engine = sqlalchemy.create_engine(base, poolclass=sqlalchemy.pool.NullPool)
        try:
            engine.connect().close()
        except sqlalchemy.exc.SQLAlchemyError as error:
            problem = f"no PostgreSQL server at {base}: {str(error).strip().splitlines()[0]}"
        finally:
            engine.dispose()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    assert base is not None
    with scratch_database(base, "advisor_test") as url:
        yield url


def load_script(name: str) -> ModuleType:
    """scripts/NAME.py imported as a module (the scripts are run by path, not installed)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`advisor ARGS` in this process: exit code (argparse's own exits included), stdout and stderr."""
    from advisor.cli import main

    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tune_command(model: Path, data_dir: Path, out: Path, *options: str) -> list[str]:
    """`advisor tune` on the math task as a subprocess argv, with the given extra options."""
    import sys

    base = ["--task", "math", "--model", str(model), "--data-dir", str(data_dir), "--out", str(out)]
    return [sys.executable, "-m", "advisor.cli", "tune", *base, *options]


def build_tiny_model(directory: Path, data_dir: Path) -> Path:
    """Save a randomly initialised 2-layer Llama and a small BPE tokenizer trained on the mirror's text."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    lines = (data_dir / "gsm8k" / "train.jsonl").read_text(encoding="utf-8").splitlines()[:2000]
    corpus = [json.loads(line)["question"] + " " + json.loads(line)["answer"] for line in lines]
    code = json.loads((data_dir / "code" / "code_alpaca_2k.json").read_text(encoding="utf-8"))[:1000]
    corpus += [item["instruction"] + " " + item["output"] for item in code]
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=512, special_tokens=special))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        initializer_range=0.3,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), data_dir)


@pytest.fixture(scope="session")
def tiny_adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter with non-zero weights saved in PEFT format for the tiny model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model),
        LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False),
    )
    directory = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(directory)
    return directory
