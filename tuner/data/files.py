"""A local data file (JSONL, JSON, CSV or Parquet) read into columns, with errors that name the file, the line and
what is wrong there.

Read here rather than through `datasets.load_dataset`, which copies every file it reads into its cache (a failed
read included) and names a bad line by its row in a parser's block. Nothing here imports torch or `datasets`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tuner.errors import AdvisorError

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
"""The file types read, by name."""

_BOM = "\ufeff"
_LIBRARY_PREFIX = re.compile(r"^(Error tokenizing data\. C error: |Could not open Parquet input source '[^']*': )")
_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true or false"}


@dataclass(frozen=True)
class FileTable:
    """One data file's rows as columns, in the order the file first names them (None where a row has no value)."""

    path: Path
    columns: dict[str, list[Any]]
    row_count: int
    lines: tuple[int, ...] | None = None
    """Each row's line in the file (JSON objects one after another), else None: rows are named by their number."""
    unit: str = "row"
    """What a row is called where `lines` is None: 'row' (CSV, Parquet) or 'item' (a JSON array's)."""

    def where(self, index: int) -> str:
        """The row at a 0-based index as an error names it: 'line 12', 'item 3' or 'row 4' (data rows from 1)."""
        if self.lines is not None:
            return f"line {self.lines[index]:,}"
        return f"{self.unit} {index + 1:,}"

    def rows(self) -> list[dict[str, Any]]:
        """Each row as a dict holding every column, as `datasets` gives a row."""
        if not self.columns:
            return [{} for _ in range(self.row_count)]
        names = list(self.columns)
        return [dict(zip(names, values, strict=True)) for values in zip(*self.columns.values(), strict=True)]


def read_table(path: Path) -> FileTable:
    """The file's rows, or an AdvisorError saying in one line why they cannot be read (checked before any parsing)."""
    if path.is_dir():
        raise AdvisorError(f"{path} is a directory: give one .jsonl, .json, .csv or .parquet file")
    if not path.is_file():
        raise AdvisorError(f"dataset file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise AdvisorError(f"cannot read {path}: expected a .jsonl, .json, .csv or .parquet file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise AdvisorError(f"cannot read {path}: {error.strerror or error}") from None
    if suffix == ".parquet":
        table = _parquet_table(path, data)
    else:
        text = _utf8_text(path, data)
        if not text.strip():
            raise AdvisorError(f"cannot read {path}: the file is empty")
        table = _csv_table(path, text) if suffix == ".csv" else _json_table(path, text)
    if table.row_count == 0:
        raise AdvisorError(f"{path} holds no rows")
    return table


def _utf8_text(path: Path, data: bytes) -> str:
    """The file's text without a leading byte-order mark, or an error at the first byte that is not UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line_start = data.rfind(b"\n", 0, error.start) + 1
        line, column = data.count(b"\n", 0, error.start) + 1, error.start - line_start + 1
        raise AdvisorError(
            f"cannot read {path}: line {line}: not UTF-8 text (byte 0x{data[error.start]:02x} at column {column})"
        ) from None
    return text.removeprefix(_BOM)


def _json_table(path: Path, text: str) -> FileTable:
    """A JSON array of objects, or JSON objects one after another (one per line, or spread over lines)."""
    if text.lstrip().startswith("["):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise _json_error(path, error) from None
        for index, item in enumerate(document, start=1):
            if not isinstance(item, dict):
                raise AdvisorError(f"cannot read {path}: item {index:,} of the array is {_kind(item)}, not an object")
        return replace(_records_table(path, document), unit="item")
    records, problem = _json_lines(text)
    if problem is not None:
        # Not one object per line: the objects may be spread over lines (as `datasets` accepts), else the line
        # that does not parse is what is wrong, unless the file does not start as JSON Lines at all.
        line, error = problem
        spread = _json_stream(text)
        if isinstance(spread, list):
            records = spread
        elif line == _first_line_number(text):
            raise _json_error(path, spread) from None
        else:
            raise AdvisorError(f"cannot read {path}: line {line}: {error.msg} (column {error.colno})")
    for line, record in records:
        if not isinstance(record, dict):
            raise AdvisorError(f"cannot read {path}: line {line}: expected a JSON object, found {_kind(record)}")
    table = _records_table(path, [record for _, record in records])
    return replace(table, lines=tuple(line for line, _ in records))


def _json_lines(text: str) -> tuple[list[tuple[int, Any]], tuple[int, json.JSONDecodeError] | None]:
    """Each non-blank line parsed on its own with its 1-based number, or the first line that does not parse."""
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as error:
            return records, (number, error)
    return records, None


def _json_stream(text: str) -> list[tuple[int, Any]] | json.JSONDecodeError:
    """The JSON values one after another in the text, each with the line it starts on, or the first error."""
    decoder, values, position, line, counted = json.JSONDecoder(), [], 0, 1, 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return values
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            return error
        line, counted = line + text.count("\n", counted, position), position
        values.append((line, value))
        position = end


def _first_line_number(text: str) -> int:
    stripped = text.lstrip()
    return text.count("\n", 0, len(text) - len(stripped)) + 1


def _json_error(path: Path, error: json.JSONDecodeError) -> AdvisorError:
    return AdvisorError(f"cannot read {path}: line {error.lineno}: {error.msg} (column {error.colno})")


def _kind(value: Any) -> str:
    return "null" if value is None else _JSON_KINDS.get(type(value), type(value).__name__)


def _records_table(path: Path, records: list[dict[str, Any]]) -> FileTable:
    """Columns from row objects: every key any row has, None where a row lacks it (as `datasets` reads them)."""
    names = dict.fromkeys(key for record in records for key in record)
    return FileTable(path, {name: [record.get(name) for record in records] for name in names}, len(records))


def _csv_table(path: Path, text: str) -> FileTable:
    """The CSV as pandas reads it (as `datasets` does: its types, and empty or NA cells as null)."""
    import pandas as pd

    try:
        frame = pd.read_csv(io.StringIO(text))
    except pd.errors.ParserError as error:
        raise AdvisorError(f"cannot read {path}: {_csv_problem(text) or _first_line(error)}") from None
    except (ValueError, pd.errors.EmptyDataError) as error:
        raise AdvisorError(f"cannot read {path}: {_first_line(error)}") from None
    columns = {str(name): [_null_if_nan(value) for value in frame[name].tolist()] for name in frame.columns}
    return FileTable(path, columns, len(frame))


def _csv_problem(text: str) -> str | None:
    """The first record with more fields than the header, by the editor's line it starts on (pandas counts records)."""
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    line = 1
    try:
        for record in reader:
            if header is None and record:
                header = record
            elif header is not None and len(record) > len(header):
                found, expected = len(record), len(header)
                return f"line {line}: {found} fields where the header has {expected} (quote a value that holds a comma)"
            line = reader.line_num + 1
    except csv.Error:
        return None
    return None


def _null_if_nan(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _parquet_table(path: Path, data: bytes) -> FileTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not data:
        raise AdvisorError(f"cannot read {path}: the file is empty")
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as error:
        raise AdvisorError(f"cannot read {path}: {_first_line(error)}") from None
    return FileTable(path, {name: table.column(name).to_pylist() for name in table.column_names}, table.num_rows)


def _first_line(error: BaseException) -> str:
    """The first line of a pandas or pyarrow message, without the parser's own prefix."""
    text = _LIBRARY_PREFIX.sub("", str(error).strip()) or type(error).__name__
    return text.splitlines()[0]
