"""What a dataset is before anything trains on it: the format found, the examples and trained tokens at the row
length, what was cut or dropped, and rendered examples with the trained spans marked (`advisor data`, the start of
a study, the app's own-data step)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.data.encode import ExampleCounts, counted_examples, regime_of
from tuner.data.formats import FORMAT_NAMES
from tuner.data.load import task_records
from tuner.data.render import DEFAULT_TEMPLATE_NAME, Segment, render_segments
from tuner.settings import DataSettings

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

REGIME_NAMES = {
    "ift": "instruction tuning: loss on the assistant turns only",
    "cpt": "continued pretraining: loss on every token",
}
PLAIN_COMPLETIONS = "instruction tuning: loss on the completions only, each written after its prompt as plain text"


@dataclass(frozen=True)
class DataPreview:
    """A dataset as a study will train on it."""

    format: str
    """The format found (or named), one of tuner.data.formats.FORMATS."""
    regime: str
    examples: int
    skipped: int
    counts: ExampleCounts | None
    """Examples and tokens at `seq_len` (None: previewed without a tokenizer, so nothing tokenised)."""
    seq_len: int
    samples: tuple[tuple[Segment, ...], ...]
    """The first examples of the shuffled order, rendered, each span with whether it carries loss."""
    note: str = ""
    """What the format's detection saw besides (a column left unused)."""


def preview_data(
    settings: DataSettings,
    seq_len: int,
    tokenizer: PreTrainedTokenizerBase | None,
    data_dir: Path | None,
    samples: int = 2,
) -> DataPreview:
    """The dataset's counts at `seq_len` and its first `samples` examples rendered (AdvisorError: the data's own).
    Without a tokenizer (the model not loaded yet): no counts, and conversations written in the default format."""
    records = task_records(settings, data_dir)
    regime = regime_of(settings, records)
    counts = counted_examples(settings, seq_len, tokenizer, data_dir)[1] if tokenizer is not None else None
    eos = getattr(tokenizer, "eos_token", None) or ""
    rendered: list[tuple[Segment, ...]] = []
    for index in range(min(samples, len(records))):
        if records.format == "text":
            rendered.append(((records.texts[index] + eos, True),))
            continue
        segments, _ = render_segments(tokenizer, records.conversations[index], records.templated)
        if regime == "cpt":
            segments = [("".join(text for text, _ in segments), True)]
        rendered.append(tuple(segments))
    return DataPreview(
        records.format, regime, len(records), records.skipped, counts, seq_len, tuple(rendered), records.note
    )


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "0 %"


def summary_line(counts: ExampleCounts, seq_len: int) -> str:
    """One line: the format, the regime, the examples and trained tokens, and what was cut or dropped."""
    found = FORMAT_NAMES.get(counts.format, counts.format)
    regime = REGIME_NAMES[counts.regime] if counts.templated or counts.regime == "cpt" else PLAIN_COMPLETIONS
    parts = [f"{_plural(counts.examples, 'example')} of {found}", regime]
    parts.append(f"{counts.trained_tokens:,} of {_plural(counts.tokens, 'token')} trained")
    if counts.regime == "cpt":
        if counts.truncated:
            parts.append(
                f"{_plural(counts.truncated, 'document')} ({_share(counts.truncated, counts.examples)}) split into "
                f"{seq_len:,}-token pieces"
            )
    else:
        if counts.truncated:
            share = _share(counts.truncated, counts.examples)
            parts.append(f"{counts.truncated:,} ({share}) cut at {seq_len:,} tokens")
        if counts.dropped:
            parts.append(
                f"{counts.dropped:,} ({_share(counts.dropped, counts.examples)}) dropped with no trained token in "
                f"their first {seq_len:,}"
            )
    if counts.skipped:
        parts.append(f"{_plural(counts.skipped, 'row')} with an empty field left out")
    if counts.default_template:
        parts.append(f"{_plural(counts.default_template, 'conversation')} written in {DEFAULT_TEMPLATE_NAME}")
    return "; ".join(parts)


def preview_lines(preview: DataPreview, start: str = "«", end: str = "»", width: int = 600) -> list[str]:
    """The summary, then each sample with its trained spans between markers (each cut at `width` characters)."""
    if preview.counts is not None:
        lines = [summary_line(preview.counts, preview.seq_len)]
    else:
        found = FORMAT_NAMES.get(preview.format, preview.format)
        lines = [f"{_plural(preview.examples, 'example')} of {found}; {REGIME_NAMES[preview.regime]}"]
    if preview.note:
        lines.append(f"note: {preview.note}")
    for number, segments in enumerate(preview.samples, start=1):
        text = "".join(f"{start}{piece}{end}" if trained else piece for piece, trained in segments)
        if len(text) > width:
            text = text[:width] + f"... ({len(text) - width:,} more characters)"
        lines += ["", f"example {number} (trained text between {start} and {end}):", text]
    return lines
