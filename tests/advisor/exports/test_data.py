"""Exports of a preset that knows its data: each tool's own dataset keys for the format, and where the loss is taken
(instruction tuning: the answers; continued pretraining: every token)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml

from advisor.exports import CONFIG_FILES, DATA_PLACEHOLDER, FORMATS, carried_fields, export_preset, read_export
from advisor.exports.base import expected_settings
from advisor.exports.data import sharegpt_roles
from advisor.presets import load_preset
from tests.advisor.exports.shared import LLAMA2_MESSAGES, MESSAGES, PRESETS, TEXT, comments, exported_fields
from tuner.data.formats import FORMATS as DATA_FORMATS


def dataset_info(tmp_path):
    return json.loads((tmp_path / "dataset_info.json").read_text(encoding="utf-8"))["advisor_data"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_header_says_the_data_format_and_where_the_loss_is_taken(tmp_path, fmt):
    export_preset(MESSAGES, fmt, tmp_path / "messages", origin="a test")
    export_preset(TEXT, fmt, tmp_path / "text", origin="a test")
    headed = "README.md" if fmt == "peft" else CONFIG_FILES[fmt]
    messages, text = comments(tmp_path / "messages" / headed), comments(tmp_path / "text" / headed)
    assert "Data: conversations (a messages list of role and content)" in messages
    assert "the loss on the assistant turns only (instruction tuning)" in messages
    assert "Data: plain text, LoRA Advisor's 'text' format; the loss on every token (continued pretraining)" in text
    assert "data_format: messages" in (tmp_path / "messages" / "preset.yaml").read_text(encoding="utf-8")


def test_trl_trains_conversations_on_the_assistant_turns_with_a_marked_template_beside(tmp_path):
    fields = exported_fields(tmp_path, "trl", MESSAGES)
    assert {key: fields.get(key) for key in ("dataset_name", "assistant_only_loss", "chat_template_path")} == {
        "dataset_name": DATA_PLACEHOLDER,
        "assistant_only_loss": True,
        "chat_template_path": "chat-template.jinja",
    }
    assert "{% generation %}" in (tmp_path / "chat-template.jinja").read_text(encoding="utf-8")
    assert "completion_only_loss" not in fields and "dataset_text_field" not in fields
    llama2 = exported_fields(tmp_path / "llama2", "trl", LLAMA2_MESSAGES)
    assert llama2["chat_template_path"] == "chat-template.jinja"  # Llama-2-chat's, marked, not the hub clone
    assert "[INST]" in (tmp_path / "llama2" / "chat-template.jinja").read_text(encoding="utf-8")


def test_trl_trains_text_on_every_token_from_the_text_column(tmp_path):
    fields = exported_fields(tmp_path, "trl", TEXT)
    assert {key: fields.get(key) for key in ("dataset_text_field", "completion_only_loss", "packing_strategy")} == {
        "dataset_text_field": "text",
        "completion_only_loss": False,
        "packing_strategy": "bfd_split",
    }
    assert "assistant_only_loss" not in fields and not (tmp_path / "chat-template.jinja").exists()


def test_trl_says_how_to_convert_sharegpt_and_falls_back_in_words_for_a_model_it_has_no_template_for(tmp_path):
    export_preset(replace(MESSAGES, data_format="sharegpt"), "trl", tmp_path / "sharegpt", origin="a test")
    assert "keeps ShareGPT's role names" in comments(tmp_path / "sharegpt" / "trl-sft.yaml")
    fields = exported_fields(tmp_path / "other", "trl", replace(MESSAGES, model="Qwen/Qwen2.5-0.5B"))
    assert fields["assistant_only_loss"] is True and "chat_template_path" not in fields
    said = comments(tmp_path / "other" / "trl-sft.yaml")
    assert "The chat template is not training-compatible" in said and "assistant_only_loss false" in said


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.parametrize("preset", [MESSAGES, TEXT], ids=["messages", "text"])
def test_trls_own_parser_reads_the_data_keys(tmp_path, preset):
    pytest.importorskip("trl")
    from trl.scripts.sft import make_parser

    export_preset(preset, "trl", tmp_path, origin="a test")
    args = ["--config", str(tmp_path / "trl-sft.yaml")]
    _, training, _, _ = make_parser().parse_args_and_config(args, fail_with_unknown_args=True)
    conversations = preset.data_format == "messages"
    assert (training.assistant_only_loss, training.completion_only_loss) == (
        conversations,
        None if conversations else False,
    )
    assert training.dataset_text_field == "text" and training.packing is True


def test_llama_factory_names_an_entry_in_a_dataset_info_json_beside_it(tmp_path):
    fields = exported_fields(tmp_path, "llama-factory", MESSAGES)
    assert {key: fields.get(key) for key in ("stage", "dataset", "dataset_dir", "neat_packing", "train_on_prompt")} == {
        "stage": "sft",
        "dataset": "advisor_data",
        "dataset_dir": ".",
        "neat_packing": True,
        "train_on_prompt": None,
    }
    assert dataset_info(tmp_path) == {
        "file_name": DATA_PLACEHOLDER,
        "formatting": "sharegpt",
        "columns": {"messages": "messages"},
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
            "system_tag": "system",
            "observation_tag": "tool",
        },
    }
    assert "file_name in dataset_info.json" in comments(tmp_path / "llama-factory.yaml")  # what to fill in


def test_llama_factory_pretrains_on_text_without_neat_packing(tmp_path):
    fields = exported_fields(tmp_path, "llama-factory", TEXT)
    assert (fields["stage"], fields["packing"], "neat_packing" in fields) == ("pt", True, False)
    assert dataset_info(tmp_path) == {
        "file_name": DATA_PLACEHOLDER,
        "formatting": "alpaca",
        "columns": {"prompt": "text"},
    }


@pytest.mark.parametrize(
    ("data_format", "formatting", "columns"),
    [
        ("sharegpt", "sharegpt", {"messages": "conversations"}),
        ("alpaca", "alpaca", {"prompt": "instruction", "query": "input", "response": "output"}),
        ("columns", "alpaca", {"prompt": "prompt", "response": "response"}),
        ("prompt-completion", "alpaca", {"prompt": "prompt", "response": "completion"}),
    ],
)
def test_llama_factory_maps_each_formats_columns(tmp_path, data_format, formatting, columns):
    fields = exported_fields(tmp_path, "llama-factory", replace(MESSAGES, data_format=data_format))
    entry = dataset_info(tmp_path)
    assert (entry["formatting"], entry["columns"]) == (formatting, columns)
    assert fields["template"] == ("empty" if data_format == "prompt-completion" else "smollm2")  # plain strings: raw
    if data_format == "sharegpt":
        assert entry["tags"]["user_tag"] == "human" and entry["tags"]["assistant_tag"] == "gpt"


def test_axolotl_reads_conversations_with_chat_template_and_trains_the_assistant(tmp_path):
    fields = exported_fields(tmp_path, "axolotl", MESSAGES)
    assert fields["datasets"] == [
        {
            "path": DATA_PLACEHOLDER,
            "type": "chat_template",
            "field_messages": "messages",
            "message_property_mappings": {"role": "role", "content": "content"},
            "roles_to_train": ["assistant"],
        }
    ]
    assert fields["train_on_inputs"] is False and fields["chat_template"] == "tokenizer_default"
    sharegpt = exported_fields(tmp_path / "sharegpt", "axolotl", replace(MESSAGES, data_format="sharegpt"))["datasets"]
    assert sharegpt[0]["message_property_mappings"] == {"role": "from", "content": "value"}
    assert sharegpt[0]["roles"] == sharegpt_roles() and "human" in sharegpt_roles()["user"]


def test_axolotl_trains_text_as_completion_on_every_token(tmp_path):
    fields = exported_fields(tmp_path, "axolotl", TEXT)
    assert fields["datasets"] == [{"path": DATA_PLACEHOLDER, "type": "completion", "field": "text"}]
    assert fields["train_on_inputs"] is True


def test_axolotl_reads_columns_with_a_user_defined_type_in_the_models_chat_format(tmp_path):
    fields = exported_fields(tmp_path, "axolotl", replace(MESSAGES, data_format="columns"))
    kind = fields["datasets"][0]["type"]
    assert (kind["field_instruction"], kind["field_output"]) == ("prompt", "response")
    assert kind["format"].endswith("<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n")
    plain = exported_fields(tmp_path / "pc", "axolotl", replace(MESSAGES, data_format="prompt-completion"))
    assert plain["datasets"][0]["type"]["format"] == "{instruction}"  # plain strings: the prompt as it is
    assert exported_fields(tmp_path / "a", "axolotl", replace(MESSAGES, data_format="alpaca"))["datasets"][0] == {
        "path": DATA_PLACEHOLDER,
        "type": "alpaca",
    }


def test_torchtune_builds_a_chat_dataset_for_conversations_and_a_text_completion_dataset_for_text(tmp_path):
    chat = exported_fields(tmp_path / "chat", "torchtune", MESSAGES)["dataset"]
    assert chat == {
        "_component_": "torchtune.datasets.chat_dataset",
        "source": DATA_PLACEHOLDER,
        "split": "train",
        "conversation_column": "messages",
        "conversation_style": "openai",
        "train_on_input": False,
        "packed": True,
    }
    text = exported_fields(tmp_path / "text", "torchtune", TEXT)["dataset"]
    assert (text["_component_"], text["column"], "train_on_input" in text) == (
        "torchtune.datasets.text_completion_dataset",
        "text",
        False,
    )
    pairs = exported_fields(tmp_path / "pairs", "torchtune", replace(MESSAGES, data_format="columns"))["dataset"]
    assert (pairs["_component_"], pairs["column_map"]) == (
        "torchtune.datasets.instruct_dataset",
        {"input": "prompt", "output": "response"},
    )


def test_litgpt_masks_the_prompt_for_instructions_and_says_it_has_no_chat_loader(tmp_path):
    fields = exported_fields(tmp_path, "litgpt", MESSAGES)
    assert fields["data"]["init_args"] | {"json_path": None} == {
        "json_path": None,
        "val_split_fraction": 0.05,
        "mask_prompt": True,
        "prompt_style": "smollm2",
    }
    said = comments(tmp_path / "litgpt-lora.yaml")
    assert "LitGPT has no loader for conversations" in said and "LitGPT has no LoRA loader for conversations" in said
    text = exported_fields(tmp_path / "text", "litgpt", TEXT)["data"]["init_args"]
    assert (text["mask_prompt"], text["prompt_style"]) == (False, {"class_path": "litgpt.prompts.Default"})


def test_peft_readme_says_the_format_and_how_the_loss_is_taken(tmp_path):
    export_preset(MESSAGES, "peft", tmp_path / "messages", origin="a test")
    export_preset(TEXT, "peft", tmp_path / "text", origin="a test")
    assert "| loss | the assistant turns only:" in (tmp_path / "messages" / "README.md").read_text(encoding="utf-8")
    assert "| loss | labels = input_ids: every token" in (tmp_path / "text" / "README.md").read_text(encoding="utf-8")


def test_continued_pretraining_on_conversations_trains_every_token_in_each_tool(tmp_path):
    preset = replace(MESSAGES, regime="cpt")
    assert exported_fields(tmp_path / "trl", "trl", preset)["assistant_only_loss"] is False
    assert exported_fields(tmp_path / "lf", "llama-factory", preset)["train_on_prompt"] is True
    axolotl = exported_fields(tmp_path / "ax", "axolotl", preset)
    assert axolotl["train_on_inputs"] is True and axolotl["datasets"][0]["roles_to_train"] == [
        "system",
        "user",
        "assistant",
        "tool",
    ]
    assert exported_fields(tmp_path / "tt", "torchtune", preset)["dataset"]["train_on_input"] is True
    assert exported_fields(tmp_path / "lg", "litgpt", preset)["data"]["init_args"]["mask_prompt"] is False


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_tool_exports_every_data_format_and_reads_its_values_back(tmp_path, fmt, data_format):
    preset = replace(MESSAGES, data_format=data_format, regime="cpt" if data_format == "text" else "ift")
    export_preset(preset, fmt, tmp_path, origin="a test")
    assert read_export(tmp_path) == carried_fields(preset, fmt)
    if fmt != "peft":  # every comment line is a comment: the file is still the tool's YAML
        assert isinstance(yaml.safe_load((tmp_path / CONFIG_FILES[fmt]).read_text(encoding="utf-8")), dict)
    assert expected_settings(preset)["loss"] == ("all" if data_format == "text" else "responses")


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_preset_that_knows_no_format_writes_no_data_files(tmp_path, fmt):
    written = export_preset(PRESETS["math-24gib"], fmt, tmp_path, origin="a test")
    assert sorted(path.name for path in written) == sorted(
        [CONFIG_FILES[fmt], "preset.yaml", *(["README.md"] if fmt == "peft" else [])]
    )
    assert "data_format" not in expected_settings(PRESETS["math-24gib"])


QUESTIONS = replace(MESSAGES, name="custom-questions", data_format="columns", columns=("question", "answer"))
"""A study's preset whose columns data named its own columns (--prompt-column question --response-column answer)."""


def test_each_tool_reads_the_studys_own_column_names(tmp_path):
    exported_fields(tmp_path / "lf", "llama-factory", QUESTIONS)
    assert dataset_info(tmp_path / "lf")["columns"] == {"prompt": "question", "response": "answer"}
    axolotl = exported_fields(tmp_path / "ax", "axolotl", QUESTIONS)["datasets"][0]["type"]
    assert (axolotl["field_instruction"], axolotl["field_output"]) == ("question", "answer")
    torchtune = exported_fields(tmp_path / "tt", "torchtune", QUESTIONS)["dataset"]
    assert torchtune["column_map"] == {"input": "question", "output": "answer"}
    export_preset(QUESTIONS, "litgpt", tmp_path / "lg", origin="a test")
    assert "write question as instruction and answer as output" in comments(tmp_path / "lg" / "litgpt-lora.yaml")
    export_preset(QUESTIONS, "trl", tmp_path / "trl", origin="a test")
    said = comments(tmp_path / "trl" / "trl-sft.yaml")
    assert "Your data: question/answer columns" in said and "'content': QUESTION}]" in said
    assert expected_settings(QUESTIONS)["columns"] == ["question", "answer"]


def flat_comments(path):
    """A file's text as one line: its comment marks and line breaks gone (the export wraps its comments)."""
    return " ".join(line.lstrip("# ").strip() for line in path.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_export_names_the_studys_columns_and_never_asks_for_them(tmp_path, fmt):
    export_preset(QUESTIONS, fmt, tmp_path, origin="a test")
    flat = flat_comments(tmp_path / ("README.md" if fmt == "peft" else CONFIG_FILES[fmt]))
    assert "Data: question/answer columns (the study's --prompt-column and --response-column)" in flat
    assert "prompt/response" not in flat and "write your column names" not in flat
    assert load_preset(str(tmp_path / "preset.yaml")).columns == ("question", "answer")


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_default_column_names_export_as_a_preset_that_names_none(tmp_path, fmt):
    unnamed = replace(MESSAGES, data_format="columns")
    export_preset(unnamed, fmt, tmp_path / "unnamed", origin="a test")
    export_preset(replace(unnamed, columns=("prompt", "response")), fmt, tmp_path / "named", origin="a test")
    for written in (tmp_path / "unnamed").iterdir():
        if written.name != "preset.yaml":
            assert written.read_bytes() == (tmp_path / "named" / written.name).read_bytes()
    headed = "README.md" if fmt == "peft" else CONFIG_FILES[fmt]
    assert "(the default --prompt-column and --response-column)" in flat_comments(tmp_path / "unnamed" / headed)
