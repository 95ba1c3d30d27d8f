"""Command-line flags from frozen dataclasses, as litgpt's `args.py`: each field is a flag, its docstring the help.

A field `trial_tokens: int = option(16_384, parse=positive)` with a string literal under it becomes
`--trial-tokens TRIAL_TOKENS`, parsed by `positive` (else by the annotation's type: int, float, Path, str, the
values of a Literal), with that string as its help and "(default: 16384)" after it; a field without a default is a
required flag. A bool is a switch: `--name` sets a False default, `--no-name` clears a True one (its docstring says
what the switch does). `from_namespace` is the way back, from what argparse parsed to the record. Pure: no torch,
no textual.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

Record = TypeVar("Record")
FLAG = "flag"
"""The metadata key of a field's Flag."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Flag:
    """How a field is spelt on the command line, beyond its name, annotation, default and docstring."""

    parse: Callable[[str], Any] | None = None
    """Turns the text into the value, raising argparse.ArgumentTypeError (None: the annotation's type)."""
    choices: tuple[Any, ...] | None = None
    """The values allowed (None: any, or a Literal annotation's)."""
    metavar: str | None = None
    """The value's name in the help (None: the field's name in capitals)."""
    aliases: tuple[str, ...] = ()
    """Other spellings that keep working (an option's older name)."""
    name: str | None = None
    """The flag, where the field's name cannot be it (`--from`: a Python keyword)."""
    one_of: str | None = None
    """A group of fields of which at most one is given."""
    required: bool = False
    """The flag must be given; in a one_of group, one of the group must."""
    hidden: bool = False
    """Left out of the help (an option for the program's own use)."""
    positional: bool = False
    """An argument given by place, not by name (`advisor data FILE`): required unless the field has a default."""
    shown_default: object = None
    """What the help names as the default where the field's own is None (decided later: a preset's, else this)."""
    fill: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Values for the docstring's {placeholders} (a list of names kept elsewhere)."""


def option(default: Any = dataclasses.MISSING, /, **how: Any) -> Any:
    """A dataclass field with its default and how it is spelt on the command line (the keywords of Flag)."""
    return dataclasses.field(default=default, metadata={FLAG: Flag(**how)})


def add_flags(parser: argparse.ArgumentParser, record: type) -> None:
    """Add one flag per field of the dataclass `record` to `parser`, in the fields' order."""
    hints = typing.get_type_hints(record)
    helps = field_docs(record)
    fields = [field for field in dataclasses.fields(record) if field.init]
    how = {field.name: field.metadata.get(FLAG, Flag()) for field in fields}
    required = {flag.one_of for flag in how.values() if flag.one_of and flag.required}
    groups: dict[str, Any] = {}
    for field in fields:
        flag = how[field.name]
        target: Any = parser
        if flag.one_of is not None:
            if flag.one_of not in groups:
                groups[flag.one_of] = parser.add_mutually_exclusive_group(required=flag.one_of in required)
            target = groups[flag.one_of]
        default = field.default
        kind = _value_type(hints[field.name])
        switch = "no-" if kind is bool and default is True else ""
        names = [flag.name or f"--{switch}{field.name.replace('_', '-')}", *flag.aliases]
        settings: dict[str, Any] = {"dest": field.name, "help": _help(helps.get(field.name, ""), flag, default)}
        if kind is bool:
            settings.update(action="store_false" if default is True else "store_true", default=bool(default))
        else:
            choices = flag.choices or (typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else None)
            parse = flag.parse or (type(choices[0]) if choices else kind)
            if parse is not str:
                settings["type"] = parse
            if choices:
                settings["choices"] = choices
            if flag.metavar is not None:
                settings["metavar"] = flag.metavar
            if default is not dataclasses.MISSING:
                settings["default"] = default
            if flag.one_of is None and (flag.required or default is dataclasses.MISSING):
                settings["required"] = True
        if flag.positional:
            names = [settings.pop("dest")]
            settings.pop("required", None)
            if default is not dataclasses.MISSING:
                settings["nargs"] = "?"
            settings.setdefault("metavar", field.name.upper())
        target.add_argument(*names, **settings)


def from_namespace(record: type[Record], namespace: argparse.Namespace) -> Record:
    """The record the parsed flags describe: each field from its flag's value."""
    fields = dataclasses.fields(record)  # type: ignore[arg-type]
    return record(**{field.name: getattr(namespace, field.name) for field in fields if field.init})


@functools.cache
def field_docs(record: type) -> dict[str, str]:
    """Each field's docstring (the string literal right after it), one line, from the record's source and its
    bases'; a field a subclass declares again keeps its base's docstring unless it has its own."""
    docs: dict[str, str] = {}
    for cls in reversed(record.__mro__):
        if not dataclasses.is_dataclass(cls):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
        assert isinstance(body, ast.ClassDef)
        for statement, after in zip(body.body, body.body[1:], strict=False):
            if (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[statement.target.id] = " ".join(after.value.value.split())
    return docs


def _value_type(hint: Any) -> Any:
    """The type a flag's text is parsed into: the annotation without its None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kinds = [kind for kind in typing.get_args(hint) if kind is not type(None)]
        if len(kinds) != 1:
            raise TypeError(f"a flag takes one type (or it and None), not {hint}")
        return kinds[0]
    return hint


def _help(doc: str, flag: Flag, default: object) -> str:
    """The flag's help: its docstring, filled in, with the default after it (escaped for argparse's % formatting)."""
    if flag.hidden:
        return argparse.SUPPRESS
    text = doc.format(**flag.fill) if flag.fill else doc
    shown = flag.shown_default
    if shown is None and default is not None and default is not dataclasses.MISSING and not isinstance(default, bool):
        shown = default
    if shown is not None:
        text = f"{text} (default: {shown})"
    return text.replace("%", "%%")
