"""Where each task's (prompt, response) pairs come from: its hub datasets and its files in the local mirror, and
how a row of each becomes a pair; local files are read here without `datasets` (tuner.data.files)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner.data.files import SUFFIXES, read_pairs, read_table
from tuner.errors import AdvisorError
from tuner.settings import DataSettings

Row = dict[str, Any]
Pair = dict[str, str]

_CALCULATOR = re.compile(r"<<[^>]*>>")


def _alpaca(row: Row) -> Pair:
    extra = (row.get("input") or "").strip()
    prompt = row["instruction"] + (f"\n\n{extra}" if extra else "")
    return {"prompt": prompt, "response": row["output"]}


def instruction_output(row: Row) -> Pair:
    """An 'instruction' and 'output' row as a pair."""
    return {"prompt": row["instruction"], "response": row["output"]}


def _magicoder(row: Row) -> Pair:
    return {"prompt": row["instruction"], "response": row["response"]}


def _mbpp(row: Row) -> Pair:
    tests = "\n".join(row["test_list"])
    return {"prompt": f"{row['text']}\nYour code should pass these tests:\n{tests}", "response": row["code"]}


def _gsm8k(row: Row) -> Pair:
    # GSM8K answers carry calculator annotations <<48/2=24>>; the worked solution reads better without.
    return {"prompt": row["question"], "response": _CALCULATOR.sub("", row["answer"])}


def _metamath(row: Row) -> Pair:
    return {"prompt": row["query"], "response": row["response"]}


def _mbpp_train_split(row: Row) -> bool:
    # MBPP task ids 511-974 are the training split (google-research README); 11-510 are scored.
    return 511 <= int(row["task_id"]) <= 974


@dataclass(frozen=True)
class Source:
    """One dataset: a path in the mirror or a hub id, and how its rows become (prompt, response)."""

    location: str
    to_pair: Callable[[Row], Pair]
    config: str | None = None
    split: str = "train"
    keep: Callable[[Row], bool] | None = None


TASK_SOURCES: dict[str, dict[str, list[Source]]] = {
    "code": {
        # Magicoder-Evol-Instruct-110K is the paper's code IFT set.
        "hub": [Source("ise-uiuc/Magicoder-Evol-Instruct-110K", _magicoder)],
        "mirror": [
            Source("code/code_alpaca_2k.json", _alpaca),
            Source("code/evol-codealpaca-2k-1.json", instruction_output),
            Source("code/evol-codealpaca-2k-2.json", instruction_output),
            Source("mbpp/mbpp.jsonl", _mbpp, keep=_mbpp_train_split),
        ],
    },
    "math": {
        # MetaMathQA is the paper's math IFT set; GSM8K train is the mirror's.
        "hub": [Source("openai/gsm8k", _gsm8k, config="main"), Source("meta-math/MetaMathQA", _metamath)],
        "mirror": [Source("gsm8k/train.jsonl", _gsm8k)],
    },
}


def _mirror_pairs(path: Path, source: Source) -> tuple[list[str], list[str]]:
    """One mirror file's pairs in file order."""
    try:
        pairs = [source.to_pair(row) for row in read_table(path).rows() if source.keep is None or source.keep(row)]
    except KeyError as missing:
        raise AdvisorError(f"dataset {source.location} has no column {missing}") from None
    return [pair["prompt"] for pair in pairs], [pair["response"] for pair in pairs]


def local_pairs(settings: DataSettings, data_dir: Path | None) -> tuple[list[str], list[str]] | None:
    """The prompts and responses of a local file or the mirror, read and checked without `datasets` (None: the hub)."""
    if settings.task == "custom":
        path = Path(str(settings.source)).expanduser()
        if not (path.exists() or path.suffix.lower() in SUFFIXES):
            return None
        return read_pairs(path, settings.prompt_column, settings.response_column)
    if data_dir is None:
        return None
    prompts: list[str] = []
    responses: list[str] = []
    for source in TASK_SOURCES[settings.task]["mirror"]:
        more_prompts, more_responses = _mirror_pairs(data_dir / source.location, source)
        prompts += more_prompts
        responses += more_responses
    return prompts, responses
