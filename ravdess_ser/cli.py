"""What every stage script shares: its typed config from params.yaml, and one-line errors.

A stage's config is a dataclass. Its defaults come from the stage's section of
``params.yaml`` (so DVC's params tracking sees exactly what the stage reads),
and every field is also a command-line option, listed with its help text and
current value by ``--help``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import re
import signal
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ravdess_ser.errors import PipelineError

PARAMS_FILE = Path("params.yaml")
INTERRUPTED = "interrupted: no partial output was kept; run `dvc repro` to finish"


def param(default, help: str):
    """A config field with its ``--help`` text."""
    if isinstance(default, dict):  # a mutable default: every config gets its own copy
        return dataclasses.field(default_factory=lambda: dict(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def _default(field: dataclasses.Field):
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def read_params(section: str, params_file: Path = PARAMS_FILE) -> dict[str, Any]:
    if not params_file.is_file():
        raise PipelineError("params file not found (run the stage from the project root)", params_file)
    try:
        params = yaml.safe_load(params_file.read_text()) or {}
    except yaml.YAMLError as error:
        raise PipelineError(f"not valid YAML ({error})", params_file) from None
    if section not in params:
        raise PipelineError(f"has no '{section}' section", params_file)
    return params[section]


def _field_parser(annotation) -> tuple[Callable[[str], Any], str | None]:
    """An argparse ``type`` and ``nargs`` for a dataclass field's annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _field_parser(inner[0])
    if origin in (tuple, list):
        return typing.get_args(annotation)[0], "*"
    if origin is dict:
        return yaml.safe_load, None  # e.g. --folds "{'1': [1, 2], '2': [3, 4]}"
    if annotation is bool:
        return lambda text: text.lower() in ("1", "true", "yes"), None
    return annotation, None


def parse_stage_config(config_cls, section: str, description: str, positionals: dict[str, str],
                       argv: list[str] | None = None, params_file: Path = PARAMS_FILE, subset: bool = False):
    """Build ``config_cls`` from ``params.yaml[section]``, overridden by command-line options.

    ``positionals`` maps the names of the stage's input/output paths to their help.
    With ``subset``, the stage reads only its own fields of a section shared with another stage.
    Returns ``(config, args)``; ``args`` holds the positionals as paths.
    """
    hints = typing.get_type_hints(config_cls)
    names = {f.name for f in dataclasses.fields(config_cls)}
    values = read_params(section, params_file)
    unknown = set(values) - names
    if unknown and not subset:
        raise PipelineError(f"'{section}' has unknown keys: {', '.join(sorted(unknown))}", params_file)
    parser = argparse.ArgumentParser(
        description=description,
        epilog=f"Option defaults are read from the '{section}' section of {params_file}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for name, help_text in positionals.items():
        parser.add_argument(name, type=Path, help=help_text)
    for f in dataclasses.fields(config_cls):
        value_type, nargs = _field_parser(hints[f.name])
        default = values.get(f.name, _default(f))
        default = tuple(default) if isinstance(default, list) else default
        default = _ParamsText(default) if isinstance(default, str) and f.name in values else default
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", dest=f.name, type=_option_type(value_type), nargs=nargs, default=default,
            help=f.metadata.get("help", ""),
        )
    args = parser.parse_args(argv)
    config_values = {}
    for f in dataclasses.fields(config_cls):
        value = getattr(args, f.name)
        config_values[f.name] = tuple(value) if isinstance(value, list) else value
    return config_cls(**config_values), args


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main: a PipelineError or an interrupt becomes one line on stderr, not a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # A stage killed with SIGTERM takes the same clean exit as Ctrl-C, so temporaries are removed.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        main()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)


@contextlib.contextmanager
def stage_imports():
    """Around a stage script's imports (torch takes seconds): Ctrl-C there gives run_stage's one line too."""
    try:
        yield
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)


# ----------------------------------------------------------------------------- checking a config's values


class _ParamsText(str):
    """A string from params.yaml, which argparse converts as it converts a default."""


def _option_type(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """The option's type; a params.yaml string it cannot convert is left for the config to report on one line
    naming its key (argparse would print its usage and ``argument --layer: invalid int value``)."""
    def parse(text: str):
        if not isinstance(text, _ParamsText):
            return convert(text)
        try:
            return convert(str(text))
        except (ValueError, TypeError, yaml.YAMLError):
            return str(text)

    parse.__name__ = getattr(convert, "__name__", "value")  # argparse names it in "invalid int value: 'x'"
    return parse


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
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return int(value)
        raise PipelineError(f"{key}={_show(value)}: must be an integer")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return float(value)
        raise PipelineError(f"{key}={_show(value)}: must be a number")
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
