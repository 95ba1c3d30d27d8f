"""Drawing K sampled answers per problem from a model in memory, prompted and scored as `advisor eval` scores them.

The prompts are lm-eval's own contexts for the benchmark's task (chat template, few-shot examples and the answer's
opening such as HumanEval's code block included), the answers are cut at the task's stop sequences as lm-eval's
HFLM cuts them, and each answer is scored by the task's own filters and process_results: a sampled answer is
judged exactly as a greedy one is in `tuner.scoring.evaluation`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.scoring.benchmarks import BENCHMARKS, EvalSettings, build_task, subset_indices
from tuner.scoring.benchmarks.humaneval import SANDBOX_WORKERS
from tuner.scoring.diversity import ProblemSamples, Sample, SamplingSettings
from tuner.scoring.evaluation import Notify, batch_size_for

if TYPE_CHECKING:
    from lm_eval.api.instance import Instance
    from lm_eval.api.task import Task
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from tuner.training.runtime import Runtime


def chat_renderer(tokenizer: PreTrainedTokenizerBase) -> Callable[..., str]:
    """The chat template as lm-eval's HFLM applies it: a started assistant turn (a gen_prefix) is continued."""

    def render(chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return tokenizer.apply_chat_template(
            chat_history,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
        )

    return render


def task_requests(
    task: Task, name: str, settings: EvalSettings, tokenizer: PreTrainedTokenizerBase
) -> tuple[list[int], list[Instance]]:
    """lm-eval's generation requests for the settings' items, contexts as it builds them, and the index of each
    one's problem in the scored split (lm-eval numbers a subset's documents from 0)."""
    chat = BENCHMARKS[name].role == "learning" and settings.prompt_format == "chat"
    indices = subset_indices(BENCHMARKS[name], settings.limit, settings.seed)
    task.build_all_requests(
        samples=indices,
        apply_chat_template=chat,
        chat_template=chat_renderer(tokenizer) if chat else None,
    )
    requests = sorted(task.instances, key=lambda instance: instance.doc_id)
    problems = [int(r.doc_id) if indices is None else indices[r.doc_id] for r in requests]
    return problems, requests


def generate_samples(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    contexts: list[str],
    generation_kwargs: dict[str, Any],
    sampling: SamplingSettings,
) -> list[list[str]]:
    """K answers for each context from one `generate` call, cut at the stop sequences (the end-of-text token's
    included) as lm-eval's HFLM cuts them."""
    import torch
    from lm_eval.models.utils import handle_stop_sequences, postprocess_generated_text

    eos = tokenizer.decode(tokenizer.eos_token_id, skip_special_tokens=False)
    until = handle_stop_sequences(list(generation_kwargs.get("until") or []), eos=eos)
    max_new_tokens = sampling.max_new_tokens or int(generation_kwargs.get("max_gen_toks", 256))
    # As HFLM encodes: the tokenizer's special tokens, unless the context already starts with the BOS token.
    bos = tokenizer.bos_token
    add_special_tokens = not (bos and contexts[0].startswith(bos))
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        encoded = tokenizer(contexts, padding="longest", return_tensors="pt", add_special_tokens=add_special_tokens)
    finally:
        tokenizer.padding_side = padding_side
    device = next(model.parameters()).device
    draw: dict[str, Any] = {"do_sample": False}
    if not sampling.greedy:
        # Plain temperature sampling over the whole vocabulary: no nucleus, no top-k (generate's default is 50).
        draw = {"do_sample": True, "temperature": sampling.temperature, "top_p": 1.0, "top_k": 0}
    with torch.no_grad():
        output = model.generate(
            input_ids=encoded["input_ids"].to(device),
            attention_mask=encoded["attention_mask"].to(device),
            num_return_sequences=sampling.samples,
            max_new_tokens=max_new_tokens,
            stop_strings=until,
            tokenizer=tokenizer,
            pad_token_id=tokenizer.pad_token_id,
            use_cache=True,
            **draw,
        )
    prompt_length = encoded["input_ids"].shape[1]
    texts = [
        postprocess_generated_text(tokenizer.decode(row[prompt_length:], skip_special_tokens=True), until, None)
        for row in output.tolist()
    ]
    return [texts[i : i + sampling.samples] for i in range(0, len(texts), sampling.samples)]


def score_samples(
    task: Task, name: str, problems: list[int], requests: list[Instance], answers: list[list[str]]
) -> list[ProblemSamples]:
    """Score each drawn answer with the task's filters and process_results, as lm-eval scores one greedy answer.

    The j-th answers of all problems go through the filters together; a benchmark that runs code runs its
    answers a few at a time in the sandbox.
    """
    metric, _, extraction = BENCHMARKS[name].metric.partition(",")
    filter_name = extraction or "none"
    takes_answer = bool(extraction)  # the metric scores an extracted final answer (GSM8K), not the text (code)
    workers = SANDBOX_WORKERS if BENCHMARKS[name].runs_code else 1

    def score(request: Instance) -> Sample:
        filtered = request.filtered_resps[filter_name]
        figures = task.process_results(request.doc, [filtered])
        return Sample(request.resps[0], bool(figures[metric] >= 1.0), str(filtered) if takes_answer else None)

    drawn: list[list[Sample]] = [[] for _ in requests]
    for j in range(len(answers[0]) if answers else 0):
        for request, problem_answers in zip(requests, answers, strict=True):
            request.resps = [problem_answers[j]]
            request.filtered_resps = {}
        task.apply_filters()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for problem, sample in zip(drawn, pool.map(score, requests), strict=True):
                problem.append(sample)
    return [ProblemSamples(problem, tuple(samples)) for problem, samples in zip(problems, drawn, strict=True)]


def draw_samples(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    name: str,
    settings: EvalSettings,
    sampling: SamplingSettings,
    data_dir: Path | None,
    runtime: Runtime,
    notify: Notify | None = None,
) -> list[ProblemSamples]:
    """K sampled answers to each of the settings' problems of benchmark `name`, scored; the same seed draws the
    same answers (on the same machine and batch size)."""
    import logging

    import torch

    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # as tuner.scoring.evaluation does: our callers show progress
    task = build_task(name, data_dir, settings.prompt_format)
    problems, requests = task_requests(task, name, settings, tokenizer)
    if not requests:
        return []
    generation_kwargs = requests[0].args[1]
    prompts_per_call = max(1, batch_size_for(runtime, generates=True) // sampling.samples)
    was_training = model.training
    model.eval()
    torch.manual_seed(sampling.seed)
    answers: list[list[str]] = []
    try:
        for start in range(0, len(requests), prompts_per_call):
            batch = requests[start : start + prompts_per_call]
            if notify is not None:
                notify(
                    f"drawing {sampling.samples} answers to {BENCHMARKS[name].title} problems "
                    f"{start + 1}-{start + len(batch)} of {len(requests)}"
                )
            answers += generate_samples(model, tokenizer, [r.args[0] for r in batch], generation_kwargs, sampling)
    finally:
        model.train(was_training)
    if notify is not None:
        notify(f"scoring {len(requests) * sampling.samples} {BENCHMARKS[name].title} answers")
    return score_samples(task, name, problems, requests, answers)
