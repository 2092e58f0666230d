"""Checking options as configuration files give them: names, types and values, with errors
that name the file, the section and the key, and suggest the closest valid name.

The helpers here fill the dataclasses that hold options (:mod:`snorky.config`,
:mod:`snorky.namespaces`); they import nothing of Snorky's but its errors.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

from snorky.errors import ConfigError

__all__ = ["fill_options", "pop_option", "suggest", "unknown_key", "describe"]

KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
"""How an error names the kind of value an option wants."""

_NOUNS = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "table"}


def describe(value: Any) -> str:
    """A TOML value as errors describe it: ``the string 'x'`` (the value only when short)."""
    noun = _NOUNS.get(type(value), type(value).__name__)
    shown = repr(value)
    return f"the {noun} {shown}" if len(shown) <= 40 else f"a {noun}"


def suggest(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_key(where: str, key: str, known: Iterable[str]) -> ConfigError:
    """The error for a key nobody reads, with the closest valid one."""
    return ConfigError(f"{where}: unknown key {key!r}{suggest(key, known)}")


def pop_option(data: dict[str, Any], key: str, kind: type, default: Any, where: str) -> Any:
    """Take ``key`` out of ``data`` if it is there, checking that it is of ``kind``."""
    if key not in data:
        return default
    value = data.pop(key)
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: {key} must be {KINDS[kind]}, not {describe(value)}")
    return value


def fill_options(
    target: Any, values: dict[str, Any], where: str, also: Iterable[str] = (), skip: Iterable[str] = ()
) -> None:
    """Set each of ``values`` on the dataclass ``target``, checking names and types.

    The type an option wants is the type of its current (default) value; numbers
    must not be negative. ``also`` names keys valid in the same section but read
    elsewhere (for suggestions); ``skip`` names fields that are not options.

    Raises:
        ConfigError: an unknown key, a value of the wrong type or a negative number.
    """
    known = {f.name for f in fields(target)} - {"transport"} - set(skip)
    for key, value in values.items():
        if key not in known:
            raise unknown_key(where, key, known | set(also))
        current = getattr(target, key)
        expected: tuple[type, ...]
        if isinstance(current, bool):
            expected = (bool,)
        elif isinstance(current, float):
            expected = (int, float)
        elif isinstance(current, int):
            expected = (int,)
        elif isinstance(current, list):
            expected = (list,)
        else:
            expected = (str,)
        if not isinstance(value, expected) or (expected != (bool,) and isinstance(value, bool)):
            raise ConfigError(f"{where} {key}: must be {KINDS[expected[-1]]}, not {describe(value)}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"{where} {key}: must not be negative, not {value!r}")
        setattr(target, key, value)
