"""``--backend-option`` keys, declared once: help text for ``--help``, a parser per type,
and ``BackendOptionError`` naming the bad key.

A factory declares its schema and hands out its help::

    FSYNC = Bool("fsync messages before APPEND is acknowledged [default: true]", True)
    SCHEMA = OptionSchema("mystore", {"fsync": FSYNC})

    class MyFactory:
        options = SCHEMA.help

        def build(self, options, data_dir, reactor):
            values = SCHEMA.parse(options, data_dir)
            return MyBackend(fsync=values[FSYNC])  # typed: a bool

The parsers (:func:`parse_bool`, :func:`parse_int`, :func:`parse_number`) are also what the
configuration file reader uses, so ``true``/``yes``/``on``/``1`` mean the same everywhere.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from mailserv.errors import BackendOptionError

T = TypeVar("T")

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in TRUE or lowered in FALSE:
        return lowered in TRUE
    raise ValueError(f"must be true or false, got {text!r}")


def parse_int(text: str, low: int | None = None, high: int | None = None) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"must be a whole number, got {text!r}") from None
    _check_range(value, low, high, text)
    return value


def parse_number(text: str, low: float | None = None, high: float | None = None) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {text!r}")
    _check_range(value, low, high, text)
    return value


def _check_range(value: float, low: float | None, high: float | None, text: str) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (
            f"between {low:g} and {high:g}"
            if low is not None and high is not None
            else (f"at least {low:g}" if low is not None else f"at most {high:g}")
        )
        raise ValueError(f"must be {bounds}, got {text!r}")


@dataclass(frozen=True, eq=False)
class Option(Generic[T]):
    """One key: its help text and the value it has when not given."""

    help: str
    default: T

    def convert(self, text: str, data_dir: str) -> T:
        """The typed value of ``text``; ValueError saying what is wrong (without the key)."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Bool(Option[bool]):
    def convert(self, text: str, data_dir: str) -> bool:
        return parse_bool(text)


@dataclass(frozen=True, eq=False)
class Int(Option[int]):
    low: int | None = None
    high: int | None = None

    def convert(self, text: str, data_dir: str) -> int:
        return parse_int(text, self.low, self.high)


@dataclass(frozen=True, eq=False)
class Number(Option[float]):
    low: float | None = None
    high: float | None = None

    def convert(self, text: str, data_dir: str) -> float:
        return parse_number(text, self.low, self.high)


@dataclass(frozen=True, eq=False)
class Choice(Option[str]):
    choices: tuple[str, ...] = ()

    def convert(self, text: str, data_dir: str) -> str:
        if text not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}, got {text!r}")
        return text


@dataclass(frozen=True, eq=False)
class Text(Option[T]):
    """Any string; ``default`` may be None for an option that is absent unless given."""

    def convert(self, text: str, data_dir: str) -> T:
        return text  # type: ignore[return-value]  # T is str or str | None


@dataclass(frozen=True, eq=False)
class Path(Option[str | None]):
    """A path; a relative one is taken from the data directory, ``none`` (or empty) is None.
    ``default`` is taken from the data directory too (None when there is none)."""

    def convert(self, text: str, data_dir: str) -> str | None:
        if not text or text.lower() == "none":
            return None
        if "\0" in text:
            raise ValueError("must not contain NUL")
        return os.path.join(data_dir, text)


class Values:
    """Parsed options; ``values[OPTION]`` is typed by the option."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[Option[Any], Any]) -> None:
        self._values = values

    def __getitem__(self, option: Option[T]) -> T:
        value: T = self._values[option]
        return value


class OptionSchema:
    """Every key a backend accepts; ``backend`` names it in error messages."""

    def __init__(self, backend: str, options: Mapping[str, Option[Any]]) -> None:
        self.backend = backend
        self.options = MappingProxyType(dict(options))
        self.help: Mapping[str, str] = MappingProxyType(
            {key: option.help for key, option in options.items()}
        )
        """For ``IBackendFactory.options``."""

    def parse(self, given: Mapping[str, str], data_dir: str = "") -> Values:
        """Each option's value, or its default; BackendOptionError names the first bad key."""
        for key in sorted(given):
            if key not in self.options:
                raise BackendOptionError(f"The {self.backend} backend has no option {key!r}")
        values: dict[Option[Any], Any] = {}
        for key, option in self.options.items():
            text = given.get(key)
            if text is None:
                default = option.default
                if isinstance(option, Path) and default is not None:
                    default = os.path.join(data_dir, default) if data_dir else None
                values[option] = default
                continue
            try:
                values[option] = option.convert(text, data_dir)
            except ValueError as exc:
                raise BackendOptionError(f"{key} {exc}") from None
        return Values(values)
