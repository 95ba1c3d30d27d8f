"""TRL's packed SFTTrainer as a throughput anchor for bench/trial_throughput.py: the same model, tokenised examples,
LoRA, batch size, row length, steps and schedule, trained the way TRL users train, in TRL's own environment.

TRL 1.16 takes a dataset with input_ids and labels columns as already tokenised and keeps its labels (-100 on the
prompt: the loss is on the completion only). packing=True with the "bfd" strategy bins whole examples (cut to
max_length) best-fit-decreasing into rows of at most max_length tokens, and padding_free flattens a step's rows into
one row of concatenated sequences with position_ids restarting at 0 for each: no padding and no attention mask
(transformers builds the block-diagonal mask from the position ids). Every token of such a batch is real.

Run in TRL's environment (what measure_trl does); it writes {tokens, batch_tokens, seconds, trl_version,
packed_rows, device} to OUT.json:

    python bench/trl_anchor.py SPEC.json OUT.json

SPEC.json: {model_dir, examples: [[input_ids, labels], ...], batch_size, seq_len, steps, warmup_steps,
learning_rate, warmup_ratio, max_grad_norm, lora: {r, lora_alpha, lora_dropout, target_modules}, threads}.
warmup_steps are trained first, uncounted, in a run of their own; warmup_ratio is the schedule's warm-up share.

This module imports only the standard library at the top: the bench imports it where TRL is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

ROOT = Path(__file__).resolve().parents[1]
SEED = 0


def trl_python(venvs: Path | None = None) -> Path:
    """The python of the pinned TRL environment scripts/validate_exports.py builds (built here if missing)."""
    from tuner.models.load import cache_root

    name = "validate_exports"
    script = sys.modules.get(name)
    if script is None:  # scripts/ is not a package: load it by path, as the tests do
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        script = importlib.util.module_from_spec(spec)
        sys.modules[name] = script
        spec.loader.exec_module(script)
    python, _seconds = script.environment(script.TOOLS["trl"], venvs or cache_root() / "export-venvs", fresh=False)
    return Path(python)


def measure_trl(python: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Run this file as a script with TRL's python on `spec` and return what it measured."""
    with tempfile.TemporaryDirectory(prefix="bench-trl-") as directory:
        spec_file, out_file = Path(directory) / "spec.json", Path(directory) / "out.json"
        spec_file.write_text(json.dumps(spec), encoding="utf-8")
        # As scripts/validate_exports.py runs its checkers: the environment's own packages, then this Python's.
        env = {**os.environ, "PYTHONNOUSERSITE": "1", "TRANSFORMERS_VERBOSITY": "error"}
        env.pop("PYTHONPATH", None)
        try:
            subprocess.run(
                [str(python), str(Path(__file__).resolve()), str(spec_file), str(out_file)],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            )
        except subprocess.CalledProcessError as error:
            lines = [line.strip() for line in (error.stderr or "").splitlines() if line.strip()]
            raise RuntimeError(
                f"the TRL anchor failed (exit {error.returncode}): {lines[-1] if lines else 'no error output'}"
            ) from None
        return json.loads(out_file.read_text(encoding="utf-8"))


# Everything below runs inside TRL's environment.


def quiet() -> None:
    """No progress bars, metric dicts or deprecation chatter: the script's only output is OUT.json."""
    import warnings

    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft|trl)\.")


def train_sft(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: datasets.Dataset,
    spec: dict[str, Any],
    steps: int,
    device: torch.device,
) -> dict[str, Any]:
    """One SFTTrainer run of `steps` packed, padding-free steps with fresh adapters, which are removed after;
    the real and batch tokens and seconds of its optimizer steps, and the packed dataset's rows."""
    import gc

    import torch
    from peft import LoraConfig
    from transformers import PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    is_cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if is_cuda else (lambda: None)
    collated: deque[tuple[int, int]] = deque()  # (real, batch) tokens per batch, in training order
    measured = {"tokens": 0, "batch_tokens": 0, "seconds": 0.0}

    class StepTimer(TrainerCallback):
        """Times each optimizer step and takes the token counts of the batch it trained."""

        started = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            sync()
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            sync()
            measured["seconds"] += time.perf_counter() - self.started
            # The dataloader may collate a batch ahead; the oldest counts are this step's batch.
            real, batch = collated.popleft()
            measured["tokens"] += real
            measured["batch_tokens"] += batch

    lora = spec["lora"]
    adapters = LoraConfig(
        r=lora["r"],
        lora_alpha=lora["lora_alpha"],
        lora_dropout=lora["lora_dropout"],
        target_modules=lora["target_modules"],
        task_type="CAUSAL_LM",
    )
    with tempfile.TemporaryDirectory(prefix="bench-trl-run-") as output_dir:
        arguments = SFTConfig(
            output_dir=output_dir,
            per_device_train_batch_size=spec["batch_size"],
            max_steps=steps,
            learning_rate=spec["learning_rate"],
            lr_scheduler_type="cosine",
            warmup_steps=spec["warmup_ratio"],  # a float below 1 is a share of the steps
            max_grad_norm=spec["max_grad_norm"],
            weight_decay=0.0,
            bf16=is_cuda and model.dtype == torch.bfloat16,  # SFTConfig's default is bf16 even on CPU
            gradient_checkpointing=False,  # SFTConfig's default is on; neither the runner nor the Trainer uses it
            max_length=spec["seq_len"],
            packing=True,
            packing_strategy="bfd",
            padding_free=True,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            dataloader_pin_memory=is_cuda,
            disable_tqdm=True,
            seed=SEED,
        )
        trainer = SFTTrainer(
            model=model,
            args=arguments,
            train_dataset=examples,
            processing_class=tokenizer,
            peft_config=adapters,
            callbacks=[StepTimer()],
        )
        trainer.remove_callback(PrinterCallback)  # no metrics dict printed after the run
        # Padding-free refuses a collator of our own, so TRL's is wrapped after the fact to count what it built.
        collate = trainer.data_collator

        def counting_collate(features: list[dict[str, Any]]) -> dict[str, Any]:
            batch = collate(features)
            real = sum(len(feature["input_ids"]) for feature in features)
            collated.append((real, batch["input_ids"].numel()))
            return batch

        trainer.data_collator = counting_collate
        packed_rows = len(trainer.train_dataset)
        try:
            trainer.train()
        finally:
            trainer.model.unload()  # the base model is left without adapters, for the next run
            del trainer
            gc.collect()
            if is_cuda:
                torch.cuda.empty_cache()
    return {**measured, "packed_rows": packed_rows}


def main(spec_file: Path, out_file: Path) -> None:
    quiet()
    import datasets
    import torch
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Set up: device, model, tokenizer, examples.
    spec = json.loads(spec_file.read_text(encoding="utf-8"))
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=dtype, attn_implementation="sdpa")
    model = model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    examples = datasets.Dataset.from_dict(
        {"input_ids": [ids for ids, _ in spec["examples"]], "labels": [labels for _, labels in spec["examples"]]}
    )

    # Warm up, uncounted, then measure.
    if spec["warmup_steps"] > 0:
        train_sft(model, tokenizer, examples, spec, spec["warmup_steps"], device)
    measured = train_sft(model, tokenizer, examples, spec, spec["steps"], device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    figures = {**measured, "trl_version": trl.__version__, "device": f"{device_name} {str(dtype).split('.')[-1]}"}
    out_file.write_text(json.dumps(figures), encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python bench/trl_anchor.py SPEC.json OUT.json")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
