"""Flags from a dataclass: each field's name, type, default and docstring make its flag, and parsing gives the
record back."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from advisor.arguments import ModelArgs, positive
from advisor.flags import add_flags, field_docs, from_namespace, option
from tuner.models.load import DEFAULT_MODEL


@dataclass(frozen=True, kw_only=True)
class Toy(ModelArgs):
    """A command's options."""

    model: str | None = option(None, shown_default="the base's")
    steps: int = option(8, parse=positive)
    """steps to take"""
    shape: Literal["wide", "deep"] = "wide"
    """how to grow
    (over two lines)"""
    out: Path | None = option(None, metavar="DIR", aliases=("--dir",))
    """where it goes"""
    adapter: Path | None = option(None, one_of="source", required=True)
    """an adapter"""
    merged: Path | None = option(None, one_of="source", required=True)
    """a merged model"""
    origin: str | None = option(None, name="--from")
    """where it came from"""
    check: bool = True
    """skip the check"""
    loud: bool = False
    """say more"""
    secret: bool = option(False, hidden=True)
    """not for people"""
    share: float = option(0.2, fill={"what": "a trial's time"})
    """part of {what}, 20% at most"""
    name: str = option(metavar="NAME")
    """a required name"""


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy")
    add_flags(parser, Toy)
    return parser


def test_the_flags_parse_back_into_the_record():
    args = parser().parse_args(["--name", "n", "--adapter", "a", "--steps", "3", "--shape", "deep", "--dir", "o"])
    assert from_namespace(Toy, args) == Toy(
        name="n", adapter=Path("a"), steps=3, shape="deep", out=Path("o"), model=None, data_dir=None
    )
    args = parser().parse_args(["--name", "n", "--merged", "m", "--from", "x", "--no-check", "--loud", "--secret"])
    record = from_namespace(Toy, args)
    assert (record.merged, record.origin, record.check) == (Path("m"), "x", False)
    assert (record.loud, record.secret) == (True, True)


def test_the_help_is_each_fields_docstring_with_its_default():
    text = " ".join(parser().format_help().split())
    assert "--steps STEPS steps to take (default: 8)" in text
    assert "--shape {wide,deep} how to grow (over two lines) (default: wide)" in text
    assert "--out DIR, --dir DIR where it goes" in text and "where it goes (default" not in text
    assert "--no-check skip the check" in text and "--loud say more" in text
    assert "--model MODEL built-in name, hub id, local directory or .gguf file (default: the base's)" in text
    assert "part of a trial's time, 20% at most (default: 0.2)" in text
    assert "--secret" not in text


def test_a_subclass_keeps_its_bases_docstrings_and_the_shared_default():
    assert field_docs(Toy)["data_dir"] == "local dataset mirror"
    assert ModelArgs().model == DEFAULT_MODEL and Toy(name="n").model is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--adapter", "a"], "the following arguments are required: --name"),
        (["--name", "n"], "one of the arguments --adapter --merged is required"),
        (["--name", "n", "--adapter", "a", "--merged", "m"], "argument --merged: not allowed with argument --adapter"),
        (["--name", "n", "--adapter", "a", "--steps", "0"], "argument --steps: must be at least 1, got 0"),
        (["--name", "n", "--adapter", "a", "--shape", "tall"], "argument --shape: invalid choice: 'tall'"),
    ],
)
def test_bad_flags_are_argparse_errors(capsys, argv, message):
    with pytest.raises(SystemExit):
        parser().parse_args(argv)
    assert message in capsys.readouterr().err
