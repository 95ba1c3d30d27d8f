"""axolotl's check: each axolotl.yaml through axolotl's own config schema and its precision and device choice.

Run inside axolotl's virtual environment: `python scripts/export_checks/check_axolotl.py JOBS.json`.
The file is read as `axolotl train` reads it (yaml.safe_load into a DictDefault), validated by
`axolotl.utils.config.validate_config` with the capabilities `axolotl.cli.config.gpu_capabilities` probes, then
given `choose_device` and `resolve_dtype`, the parts of `normalize_config` that pick the device and the dtype
(the rest of it loads the model's config from the hub). The values come back from the validated config, the chat
template from what axolotl's `get_chat_template` resolves, and the quantisation (QLoRA: adapter qlora with
load_in_4bit) from the BitsAndBytesConfig its model loader's `_set_quantization_config` builds.

For a preset that knows its data format, the validated dataset entry says which reader axolotl picks (its `type`:
chat_template with its message mappings, alpaca, completion, or a user-defined mapping, which axolotl's own
`UserDefinedDatasetConfig` must take) and train_on_inputs / roles_to_train where the loss is taken; a user-defined
format is applied to the example record.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Any
from unittest import mock

import common

ATTENTION = {"q_proj", "k_proj", "v_proj", "o_proj"}
MLP = {"gate_proj", "up_proj", "down_proj"}
"""A Llama-style layer's linear modules, to name a lora_target_modules list the way the preset does."""
FAMILIES = {"llama-2": "llama2", "smollm2": "smollm2"}
"""Model families by a fragment of the hub id (lower case), for a template axolotl takes from the tokenizer."""
LLAMA2_TURN = "<s>[INST] Hi [/INST] Hello </s>"
"""One user/assistant turn in Llama-2-chat's format."""


def targets_of(cfg: Any) -> str:
    """'all', 'attention' or 'mlp' for the validated config's LoRA targets, else the names as given."""
    if cfg.lora_target_linear:
        return "all"
    chosen = set(cfg.lora_target_modules or ())
    named = {"attention": ATTENTION, "mlp": MLP, "all": ATTENTION | MLP}
    return next((name for name, modules in named.items() if chosen == modules), ",".join(sorted(chosen)))


def family_of(cfg: Any) -> tuple[str | None, str]:
    """The chat template's model family as axolotl resolves it (None: none found), and how it was read."""
    from axolotl.utils.chat_templates import get_chat_template

    choice = str(getattr(cfg.chat_template, "value", cfg.chat_template))
    if choice == "tokenizer_default":
        model = str(cfg.base_model).lower()
        family = next((name for fragment, name in FAMILIES.items() if fragment in model), None)
        return family, f"chat_template tokenizer_default: {cfg.base_model}'s own template (family from base_model)"
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    template = get_chat_template(user_choice=choice, jinja_template=cfg.chat_template_jinja)
    turn = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    text = (
        ImmutableSandboxedEnvironment().from_string(template).render(messages=turn, bos_token="<s>", eos_token="</s>")
    )
    family = "llama2" if text == LLAMA2_TURN else None
    return family, f"chat_template {choice}: a user/assistant turn renders as {text!r}"


def gpu_capabilities() -> tuple[dict[str, Any], dict[str, Any]]:
    """What `axolotl.cli.config.gpu_capabilities` probes (that module imports axolotl's telemetry, posthog, which
    the schema does not need): bf16, fp8 and tf32 support, the GPU count and compute capability, torch's version."""
    import torch
    from transformers.utils import is_torch_bf16_gpu_available, is_torch_tf32_available

    try:
        properties = torch.cuda.get_device_properties("cuda")
        compute_capability = f"sm_{properties.major}{properties.minor}"
        fp8 = torch.cuda.get_device_capability() >= (9, 0)
    except (RuntimeError, AssertionError):
        compute_capability, fp8 = None, False
    capabilities = {
        "bf16": is_torch_bf16_gpu_available(),
        "fp8": fp8,
        "tf32": is_torch_tf32_available(),
        "n_gpu": int(os.environ.get("WORLD_SIZE", 1)),
        "compute_capability": compute_capability,
    }
    return capabilities, {"torch_version": str(torch.__version__).split("+", maxsplit=1)[0]}


def check(job: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Validate one export as `axolotl train` does; the values the validated config holds."""
    import axolotl.utils.config as axolotl_config
    import torch
    import yaml
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    notes: list[str] = []
    raw = DictDefault(yaml.safe_load(Path(job["file"]).read_text(encoding="utf-8")))
    capabilities, env_capabilities = gpu_capabilities()
    with contextlib.ExitStack() as stack:
        if job["expected"]["hardware"] == "gpu" and not torch.cuda.is_available():
            # as on a bf16 GPU: `bf16: auto` resolves to bf16 there, and the schema's bf16 warning stays quiet
            capabilities["bf16"] = True
            stack.enter_context(mock.patch.object(axolotl_config, "is_torch_bf16_gpu_available", lambda: True))
            notes.append(
                "no CUDA here: patched axolotl.utils.config.is_torch_bf16_gpu_available to True (resolve_dtype's "
                "bf16 probe) and passed bf16 support in the capabilities, as a bf16 GPU reports them"
            )
        cfg = validate_config(raw, capabilities=capabilities, env_capabilities=env_capabilities)
        cfg.world_size, cfg.local_rank = 1, 0  # one device, as normalize_config sets them without a launcher
        axolotl_config.choose_device(cfg)
        axolotl_config.resolve_dtype(cfg)
    precision = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}.get(cfg.torch_dtype)
    family, how = family_of(cfg)
    values = {
        "learning_rate": cfg.learning_rate,
        "rank": cfg.lora_r,
        "alpha": cfg.lora_alpha,
        "dropout": cfg.lora_dropout,
        "targets": targets_of(cfg),
        "epochs": cfg.num_epochs,
        "batch_size": cfg.micro_batch_size * (cfg.gradient_accumulation_steps or 1),
        "seq_len": cfg.sequence_len,
        "warmup_ratio": cfg.warmup_ratio if cfg.warmup_ratio is not None else f"warmup_steps {cfg.warmup_steps}",
        # axolotl has no device key (it trains on CUDA where present): the hardware is what the dtype was made for
        "hardware": "cpu" if cfg.torch_dtype == torch.float32 else "gpu",
        "precision": precision or str(cfg.torch_dtype),
        "gradient_checkpointing": bool(cfg.gradient_checkpointing),
        "family": family,
    }
    if not cfg.lora_target_linear:
        values["target_modules"] = list(cfg.lora_target_modules or ())
    notes += [
        f"attention: attn_implementation={cfg.attn_implementation} (uses the flash-attn library: "
        f"{cfg.attn_uses_flash_lib}); device here: {cfg.device}; dtype: {cfg.torch_dtype} (bf16={cfg.bf16}, "
        f"fp16={cfg.fp16}, tf32={cfg.tf32}); hardware read from the dtype, axolotl having no device key",
        how,
    ]
    values["quantize"], quantised = quantization(cfg, job["expected"]["precision"])
    data, said = data_values(job, cfg)
    return values | data, notes + said + quantised


LOADER_ONLY = ("posthog", "fastcore", "fastcore.parallel")
"""Packages axolotl's model loader imports at the top (telemetry; sharded FSDP loading) that the validator's install
leaves out: stand-ins let it import, and the quantisation set-up never calls them."""


class StandIn(types.ModuleType):
    """An absent package's stand-in: any attribute is a function that says it is one if called."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)

        def absent(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError(f"{self.__name__}.{name} is a stand-in: that package is not installed")

        return absent


def stand_in_absent_packages() -> list[str]:
    """A StandIn for each of LOADER_ONLY that is not installed; a note naming them (none: no note)."""
    tops = {name.split(".")[0] for name in LOADER_ONLY}
    absent = {top for top in tops if isinstance(sys.modules.get(top), StandIn) or importlib.util.find_spec(top) is None}
    stood_in = [name for name in LOADER_ONLY if name.split(".")[0] in absent]
    for name in stood_in:
        if not isinstance(sys.modules.get(name), StandIn):
            module = StandIn(name)
            module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
            module.__path__ = []
            sys.modules[name] = module
    if not stood_in:
        return []
    return [
        f"{', '.join(stood_in)} absent: stand-ins let axolotl.loaders.model import (its quantisation set-up uses none)"
    ]


def quantization(cfg: Any, precision: str) -> tuple[str | None, list[str]]:
    """The quantisation axolotl's model loader would load the model with: its own ModelLoader._set_quantization_config
    on the validated config, for a model config that names none (the loader's __init__ reads the model's config
    from the hub, so the loader is made without it)."""
    notes = stand_in_absent_packages()
    from axolotl.loaders.model import ModelLoader

    loader = object.__new__(ModelLoader)
    loader.cfg, loader.model_kwargs, loader.model_config = cfg, {}, types.SimpleNamespace()
    loader._set_quantization_config()
    config = loader.model_kwargs.get("quantization_config")
    if config is not None:
        notes.append(
            f"ModelLoader._set_quantization_config (adapter {cfg.adapter}, load_in_4bit {cfg.load_in_4bit}): "
            f"BitsAndBytesConfig {config.bnb_4bit_quant_type}, double quant {config.bnb_4bit_use_double_quant}, "
            f"compute {config.bnb_4bit_compute_dtype}"
        )
    return common.bnb_quantize(config, precision), notes


def data_values(job: dict[str, Any], cfg: Any) -> tuple[dict[str, Any], list[str]]:
    """The format axolotl's dataset entry reads and where it takes the loss, from the validated config."""
    if common.data_format(job) is None:
        return {}, []
    (dataset,) = cfg.datasets
    kind = dataset.get("type")
    responses = not cfg.train_on_inputs
    named: dict[str, Any] = {}  # the columns format's column names, as axolotl's reader takes them
    if kind == "chat_template":
        mappings = dict(dataset.get("message_property_mappings") or {})
        found = {"role": "messages", "from": "sharegpt"}.get(mappings.get("role"), f"chat_template {mappings}")
        trained = list(dataset.get("roles_to_train") or ["assistant"])  # the chat_template loader's default
        responses = responses and trained == ["assistant"]
        how = f"roles_to_train {trained}, train_on_eos {dataset.get('train_on_eos')}, roles {dataset.get('roles')}"
    elif isinstance(kind, dict):
        from axolotl.prompt_strategies.user_defined import UserDefinedDatasetConfig

        prompter = UserDefinedDatasetConfig(**dict(kind))  # what axolotl's user_defined loader builds from it
        answer = prompter.field_output
        columns = [prompter.field_instruction, answer]
        # Two columns other than prompt/completion are LoRA Advisor's columns format, under the study's names.
        found = "prompt-completion" if columns == ["prompt", "completion"] else "columns"
        named = {"columns": columns} if found == "columns" else {}
        example = job["example"]
        prompt = prompter.no_input_format.format(instruction=example[prompter.field_instruction])
        how = f"user-defined: the example's prompt renders as {prompt!r}, then its {answer} {example[answer]!r} and EOS"
    else:
        found = {"alpaca": "alpaca", "completion": "text"}.get(str(kind), f"type {kind}")
        how = f"type {kind}" + (f", field {dataset.get('field')}" if kind == "completion" else "")
        responses = responses and kind != "completion"  # a completion dataset trains on every token
    loss = "responses" if responses else "all"
    return {"data_format": found, "loss": loss, **named}, [f"data: {how}; train_on_inputs {cfg.train_on_inputs}"]


if __name__ == "__main__":
    common.run(check)
