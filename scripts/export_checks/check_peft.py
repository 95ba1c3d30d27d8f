"""PEFT's check: adapter_config.json loaded by PEFT's LoraConfig.from_pretrained and applied by get_peft_model to a
small randomly initialised Llama-style model; the values read back from the config and the adapted modules. The
PEFT export carries the adapter only (precision, device and schedule are the training loop's). For QLoRA, which no
adapter setting holds, the README's code is parsed: the BitsAndBytesConfig it builds is built by transformers from
the same arguments, and the code must call prepare_model_for_kbit_training. See common.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import common
import torch
from peft import LoraConfig, get_peft_model
from transformers import BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

ATTENTION = {"q_proj", "k_proj", "v_proj", "o_proj"}
MLP = {"gate_proj", "up_proj", "down_proj"}


def check(job: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    config = LoraConfig.from_pretrained(job["dir"])
    small = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    model = get_peft_model(LlamaForCausalLM(small), config)
    adapted = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if hasattr(module, "lora_A")}
    ranks = {module.r["default"] for _, module in model.named_modules() if hasattr(module, "lora_A")}
    targets = {frozenset(ATTENTION | MLP): "all", frozenset(ATTENTION): "attention", frozenset(MLP): "mlp"}
    quantization, said = readme_quantization(Path(job["dir"]) / "README.md")
    got = {
        "rank": ranks.pop() if len(ranks) == 1 else f"several: {sorted(ranks)}",
        "alpha": float(config.lora_alpha),
        "dropout": config.lora_dropout,
        "targets": targets.get(frozenset(adapted), f"other: {sorted(adapted)}"),
        "quantize": common.bnb_quantize(quantization, job["expected"]["precision"]),
    }
    return got, [f"{len(adapted)} module types adapted in a 2-layer model", *said]


def readme_quantization(readme: Path) -> tuple[BitsAndBytesConfig | None, list[str]]:
    """The BitsAndBytesConfig the README's Python code builds (None: it builds none), by transformers from the code's
    own arguments; RuntimeError where the code does not parse or builds one without prepare_model_for_kbit_training."""
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(encoding="utf-8"), flags=re.DOTALL)
    tree = ast.parse("\n".join(blocks))  # a SyntaxError is the finding
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]
    built = [call for call in calls if call.func.id == "BitsAndBytesConfig"]
    if not built:
        return None, []
    if not any(call.func.id == "prepare_model_for_kbit_training" for call in calls):
        raise RuntimeError("README.md builds a BitsAndBytesConfig but never calls prepare_model_for_kbit_training")
    arguments = {keyword.arg: argument(keyword.value) for keyword in built[0].keywords}
    return BitsAndBytesConfig(**arguments), [f"README.md's code: BitsAndBytesConfig({arguments})"]


def argument(node: ast.expr) -> Any:
    """A literal, or a torch dtype written as torch.NAME."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "torch":
        return getattr(torch, node.attr)
    return ast.literal_eval(node)


if __name__ == "__main__":
    common.run(check)
