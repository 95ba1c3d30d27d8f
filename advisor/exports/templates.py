"""The presets' models' chat templates as Jinja, plain and marked for assistant-only loss (pure).

Llama-2's base tokenizer has no chat template, so the exports that need one write Llama-2-chat's; SmolLM2-Instruct's
tokenizer has its own. TRL's `assistant_only_loss` needs `{% generation %}` markers around what the model is to
learn (each assistant turn with its end-of-turn token), which neither template has, and TRL 1.16's
`get_training_chat_template` patches neither: `training_template` gives each with the markers, rendering the same
text.
"""

from __future__ import annotations

LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)
"""Llama-2-chat's chat template (meta-llama/Llama-2-7b-chat-hf's tokenizer_config.json)."""
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""SmolLM2-Instruct's chat template (HuggingFaceTB/SmolLM2-135M-Instruct's chat_template.jinja): ChatML."""

_MARKED = {
    "llama2": LLAMA2_CHAT_TEMPLATE.replace(
        "{{ ' '  + content.strip() + ' ' + eos_token }}",
        "{% generation %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endgeneration %}",
    ),
    "smollm2": SMOLLM2_CHAT_TEMPLATE.replace(
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}",
        "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}{% generation %}"
        "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}{% else %}"
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endif %}",
    ),
}
TEMPLATES = {"llama2": LLAMA2_CHAT_TEMPLATE, "smollm2": SMOLLM2_CHAT_TEMPLATE}
"""Each model family's chat template (base.FAMILIES names the families)."""
TEMPLATE_NAMES = {
    "llama2": "Llama-2-chat's chat template (Llama-2's base tokenizer has none)",
    "smollm2": "SmolLM2-Instruct's own chat template",
}
"""Whose chat template each family's is, in words."""


def training_template(family: str | None) -> str | None:
    """The family's chat template with `{% generation %}` markers around each assistant turn and its end-of-turn
    token (None for a family not known here)."""
    return _MARKED.get(family or "")


USER_TURNS = {
    "llama2": "[INST] {instruction} [/INST]",
    "smollm2": "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n",
}
"""Each family's chat template rendered for one user turn, up to the assistant's answer, with {instruction} for the
prompt (after the tokenizer's BOS): what a tool with a prompt format but no chat template for pairs writes."""
