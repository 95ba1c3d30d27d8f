"""`advisor data FILE`: what a dataset is before anything trains on it: its format, examples, trained tokens, what
is cut at the row length, and rendered examples with the trained text marked."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass

from advisor.arguments import ModelArgs, positive, size
from advisor.flags import option
from tuner.defaults import DATA_FORMATS, DEFAULT_SEQ_LEN, MAX_SEQ_LEN, REGIMES
from tuner.errors import AdvisorError
from tuner.settings import DataSettings


@dataclass(frozen=True, kw_only=True)
class DataArgs(ModelArgs):
    """`advisor data`'s options: each field is a flag, its docstring the flag's help (see advisor/flags.py)."""

    file: str = option(positional=True)
    """a JSONL/JSON/CSV/Parquet file or a hub dataset id"""
    format: str = option("auto", choices=DATA_FORMATS, metavar="FORMAT")
    """the data's format: auto, messages, sharegpt, alpaca, prompt-completion, columns or text (auto: found from
    its columns)"""
    regime: str | None = option(None, choices=REGIMES, shown_default="cpt for plain text, else ift")
    """ift: loss on the responses; cpt: continued pretraining, loss on every token"""
    prompt_column: str = "prompt"
    """for two named columns: the instruction column"""
    response_column: str = "response"
    """for two named columns: the answer column"""
    seq_len: int = option(DEFAULT_SEQ_LEN, parse=size(MAX_SEQ_LEN))
    """tokens per packed row (what is cut or split is counted at this length)"""
    examples: int = option(2, parse=positive)
    """rendered examples to show"""
    seed: int = 0
    """seed of the shuffle (the examples shown are the first of it, as a study's held-out set)"""
    json: bool = False
    """print the counts and examples as JSON on stdout"""


def data(args: DataArgs) -> int:
    """Show what a dataset is before anything trains on it: the format found (conversations, ShareGPT, Alpaca,
    prompt/completion, prompt/response columns or plain text), the examples and the tokens that carry loss at the
    row length, what is cut or dropped, and examples rendered with the model's chat template, the trained text
    between « and ».

    Loads only the model's tokenizer.
    """
    from tuner.data.load import resolve_data_dir, task_records
    from tuner.data.preview import preview_data, preview_lines
    from tuner.models.load import load_tokenizer, resolve_model
    from tuner.training.runtime import quiet_libraries

    try:
        settings = DataSettings(
            "custom",
            source=args.file,
            prompt_column=args.prompt_column,
            response_column=args.response_column,
            seed=args.seed,
            format=args.format,
            regime=args.regime,
        )
    except ValueError as error:
        raise AdvisorError(str(error)) from None
    data_dir = resolve_data_dir(args.data_dir)
    task_records(settings, data_dir)  # the data's own errors before the tokenizer loads
    quiet_libraries()
    tokenizer = load_tokenizer(resolve_model(args.model))
    preview = preview_data(settings, args.seq_len, tokenizer, data_dir, args.examples)
    if args.json:
        shown = [[{"text": text, "trained": trained} for text, trained in sample] for sample in preview.samples]
        print(json.dumps({"counts": asdict(preview.counts), "seq_len": args.seq_len, "examples": shown}, indent=2))
        return 0
    sys.stdout.write("\n".join(preview_lines(preview)) + "\n")
    return 0
