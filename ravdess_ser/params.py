"""The fields of the typed configs (``DataConfig``, ``EmbedConfig``, ...): a default with its help text, and the
conversion and checks that give a value from params.yaml, the command line or a saved file one canonical form.

Plain dataclass helpers: the library's configs use them without importing the command-line module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import types
import typing

from ravdess_ser.errors import PipelineError


def param(default, help: str):
    """A config field with its ``--help`` text."""
    if isinstance(default, dict):  # a mutable default: every config gets its own copy
        return dataclasses.field(default_factory=lambda: dict(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def _converted(value, annotation, key: str):
    """``value`` as the annotated type, converted as its command-line option would convert it."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(annotation):
            return None
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    if annotation is bool:
        if isinstance(value, bool):
            return value
        words = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
        if str(value).strip().lower() in words:
            return words[str(value).strip().lower()]
        raise PipelineError(f"{key}={_show(value)}: must be true or false")
    if annotation in (int, float):
        # An int field takes integers only; a float field takes either (YAML reads 120 as an int).
        accepted = (int,) if annotation is int else (int, float)
        if isinstance(value, accepted) and not isinstance(value, bool):
            return annotation(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return annotation(value)
        raise PipelineError(f"{key}={_show(value)}: must be {'an integer' if annotation is int else 'a number'}")
    if annotation is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # YAML reads an unquoted 1234 as a number; the command line gives the text
        if not isinstance(value, str):
            raise PipelineError(f"{key}={_show(value)}: must be a string")
        return str(value)
    return value


def convert_params(config, section: str) -> None:
    """Give every field of a (frozen) config dataclass its annotated type, from YAML as from the command line.

    Called first by each config's ``__post_init__``; raises :class:`PipelineError` naming ``section.key``.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        converted = _converted(value, hints[f.name], f"{section}.{f.name}")
        if converted is not value:
            object.__setattr__(config, f.name, converted)


def check_param(key: str, value, ok: bool, allowed: str) -> None:
    """Raise ``section.key=value: must be <allowed>`` unless ``ok``."""
    if not ok:
        raise PipelineError(f"{key}={_show(value)}: must be {allowed}")


def check_choice(key: str, value, choices) -> None:
    if value not in choices:
        raise PipelineError(f"{key}={value!r} is not one of {', '.join(choices)}")


def positive(value) -> bool:
    return math.isfinite(value) and value > 0


DEVICES_ALLOWED = "auto, cpu, cuda or cuda:N (or mps, xpu)"


def valid_device(name: str) -> bool:
    """A torch device name, checked without importing torch (the stage clients of the warm worker never do)."""
    return re.fullmatch(r"auto|cpu|mps|(cuda|xpu)(:\d+)?", name) is not None
