"""Where the task's examples are read from: a local file, the local mirror (the layout of the project's
shared/data, given by --data-dir or ADVISOR_DATA_DIR) or the Hugging Face hub; shuffled and capped the same way for
a study and the full run after it."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.data.formats import Records, Table, read_records
from tuner.data.sources import TASK_SOURCES, Source, instruction_output, local_records, pair_records
from tuner.errors import AdvisorError
from tuner.settings import DataSettings

if TYPE_CHECKING:
    import datasets

DATA_DIR_ENV = "ADVISOR_DATA_DIR"
MAX_EXAMPLES = 20_000
"""Examples kept after the deterministic shuffle: enough for any trial budget, cheap to tokenise."""


def resolve_data_dir(given: str | None) -> Path | None:
    """The local mirror: --data-dir, else ADVISOR_DATA_DIR, else None (load from the hub)."""
    value = given or os.environ.get(DATA_DIR_ENV)
    if not value:
        return None
    path = Path(value).expanduser()
    origin = "--data-dir" if given else DATA_DIR_ENV
    if not path.is_dir():
        raise AdvisorError(f"data directory not found: {path} (from {origin})")
    return path


def load_hub(source: Source) -> datasets.Dataset:
    import datasets

    try:
        return datasets.load_dataset(source.location, source.config, split=source.split)
    except Exception as error:  # noqa: BLE001 (unreachable hub, unknown id, missing split)
        raise AdvisorError(
            f"cannot load dataset '{source.location}' from the Hugging Face hub ({_first_line(error)}); "
            f"give a local mirror with --data-dir or {DATA_DIR_ENV}"
        ) from None


def _first_line(error: BaseException) -> str:
    """The first line of the innermost cause: datasets wraps parse errors in a generic message."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def load_records(settings: DataSettings, data_dir: Path | None) -> Records:
    """The task's examples in its format, shuffled deterministically and capped at MAX_EXAMPLES.

    Local files and the mirror are read without `datasets`, so a load leaves nothing in its cache.
    """
    records = local_records(settings, data_dir)
    if records is None:
        records = _hub_records(settings)
    import numpy as np

    # The permutation `datasets.Dataset.shuffle(seed=...)` draws, so held-out splits stay what they were.
    order = np.random.default_rng(settings.seed).permutation(len(records))[:MAX_EXAMPLES]
    return records.select(order.tolist())


def task_records(settings: DataSettings, data_dir: Path | None) -> Records:
    """load_records' result, read once per process while its files are unchanged."""
    if settings.task == "custom":
        files = [Path(str(settings.source)).expanduser()]
    else:
        files = [data_dir / source.location for source in TASK_SOURCES[settings.task]["mirror"]] if data_dir else []
    return _task_records(settings, data_dir, stamps(files))


@functools.lru_cache(maxsize=4)
def _task_records(settings: DataSettings, data_dir: Path | None, _stamps: tuple[tuple[str, int, int], ...]) -> Records:
    return load_records(settings, data_dir)


def _hub_records(settings: DataSettings) -> Records:
    """A hub dataset's rows: a custom one in its format, a task's as (prompt, response) pairs."""
    import datasets

    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity(logging.CRITICAL)  # errors come back as one AdvisorError line
    if settings.task == "custom":
        location = str(settings.source)
        table = load_hub(Source(location, instruction_output))
        columns = table[:]  # whole columns at once: iterating a Dataset's rows is slow
        if len(table) == 0:
            raise AdvisorError(f"{location} holds no rows")
        return read_records(
            Table(location, columns, len(table), lambda index: f"row {index + 1:,}"),
            settings.format,
            settings.prompt_column,
            settings.response_column,
        )
    pairs: list[dict[str, str]] = []
    for source in TASK_SOURCES[settings.task]["hub"]:
        table = load_hub(source)
        if source.keep is not None:
            table = table.filter(source.keep)
        try:
            pairs += table.map(source.to_pair, remove_columns=table.column_names).to_list()
        except KeyError as missing:
            raise AdvisorError(f"dataset {source.location} has no column {missing}") from None
    return pair_records(pairs)


def stamps(paths: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """Each existing file's path, size and modification time: part of an in-memory key, so an edit reads afresh."""
    stamps = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            continue
        stamps.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(stamps)
