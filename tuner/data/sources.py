"""Where each task's examples come from: its hub datasets and its files in the local mirror, and how a row of each
becomes a (prompt, response) pair; a user's own file is read in its format (tuner.data.formats), here without
`datasets` (tuner.data.files)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner.data.files import SUFFIXES, FileTable, read_table
from tuner.data.formats import Records, Table, read_records
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


def _mirror_pairs(path: Path, source: Source) -> list[Pair]:
    """One mirror file's pairs in file order."""
    try:
        return [source.to_pair(row) for row in read_table(path).rows() if source.keep is None or source.keep(row)]
    except KeyError as missing:
        raise AdvisorError(f"dataset {source.location} has no column {missing}") from None


def pair_records(pairs: list[Pair]) -> Records:
    """(prompt, response) pairs as one-turn conversations."""
    return Records("columns", tuple((("user", p["prompt"]), ("assistant", p["response"])) for p in pairs))


def file_records(table: FileTable, settings: DataSettings) -> Records:
    """A local file's rows in the format named (or found from its columns)."""
    named = Table(str(table.path), table.columns, table.row_count, table.where)
    return read_records(named, settings.format, settings.prompt_column, settings.response_column)


def local_records(settings: DataSettings, data_dir: Path | None) -> Records | None:
    """The examples of a local file or the mirror, in file order, read and checked without `datasets` (None: the
    hub)."""
    if settings.task == "custom":
        path = Path(str(settings.source)).expanduser()
        if not (path.exists() or path.suffix.lower() in SUFFIXES):
            return None
        return file_records(read_table(path), settings)
    if data_dir is None:
        return None
    pairs: list[Pair] = []
    for source in TASK_SOURCES[settings.task]["mirror"]:
        pairs += _mirror_pairs(data_dir / source.location, source)
    return pair_records(pairs)
