"""What the benchmarks' lm-eval tasks share (pure until called): lm-eval's own YAML, mirror readers, task building.

A mirror task starts from lm-eval's own YAML (prompt, preprocessing, metrics, filters) and swaps the hub
download for a reader of the mirror's files, so scores mean what lm-eval's mean.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import AdvisorError
from tuner.scoring.benchmarks.base import TaskBuilder

if TYPE_CHECKING:
    import datasets
    from lm_eval.api.task import Task

Reader = Callable[..., "datasets.DatasetDict"]
"""A mirror reader: the benchmark's splits from the mirror directory (lm-eval's metadata keywords ignored)."""


def stock_config(relative: str, resolve: bool = True) -> dict[str, Any]:
    """lm-eval's own YAML for a task, includes merged and (when `resolve`) its !function helpers imported."""
    import lm_eval.tasks
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(Path(lm_eval.tasks.__file__).parent / relative, resolve_func=resolve, recursive=resolve)


def mirror_file(data_dir: Path, relative: str) -> Path:
    """A file of the mirror, or AdvisorError naming where it was looked for."""
    path = data_dir / relative
    if not path.is_file():
        raise AdvisorError(f"benchmark file not found: {path} (looked in the mirror given by --data-dir)")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file, blank lines skipped."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def dataset_splits(**splits: list[dict[str, Any]]) -> datasets.DatasetDict:
    """A DatasetDict with one split per keyword."""
    import datasets

    return datasets.DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in splits.items()})


@cache
def _read_once(reader: Reader, *args: object) -> datasets.DatasetDict:
    return reader(*args)


def mirror_dataset(reader: Reader, *args: object) -> Callable[..., datasets.DatasetDict]:
    """lm-eval's `custom_dataset` for a reader: the files are read once per process, since a study scores every
    surviving trial on the same items (lm-eval passes its metadata as keywords, which the readers ignore)."""
    return lambda **_: _read_once(reader, *args)


def stock_task(relative: str, reader: Reader, split: str) -> TaskBuilder:
    """A task built from lm-eval's own YAML (one prompt whatever the format) whose one `split` ('validation' or
    'test') `reader` reads from the mirror when a mirror directory is given."""

    def build(data_dir: Path | None, prompt_format: str) -> Task:
        config = stock_config(relative)
        if data_dir is not None:
            config.update(custom_dataset=mirror_dataset(reader, data_dir), dataset_kwargs=None, training_split=None)
            config.update(validation_split=None, test_split=None, fewshot_split=None, process_docs=None)
            config[f"{split}_split"] = split
        return configured_task(config)

    return build


def configured_task(config: dict[str, Any]) -> Task:
    """lm-eval's task for a config; a dataset that cannot be loaded is an AdvisorError naming the mirror or the hub."""
    from lm_eval.api.task import ConfigurableTask

    try:
        return ConfigurableTask(config=config)
    except AdvisorError:
        raise
    except Exception as error:  # noqa: BLE001 (datasets raises many types for an unreachable hub)
        where = "the Hugging Face hub" if config.get("custom_dataset") is None else "the local mirror"
        raise AdvisorError(
            f"cannot load benchmark {config['task']} from {where} ({str(error).strip().splitlines()[0]}); "
            "give a local mirror with --data-dir or ADVISOR_DATA_DIR"
        ) from None
