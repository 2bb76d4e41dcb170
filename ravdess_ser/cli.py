"""What every stage script shares: its typed config from params.yaml, and one-line errors.

A stage's config is a dataclass. Its defaults come from the stage's section of
``params.yaml`` (so DVC's params tracking sees exactly what the stage reads),
and every field is also a command-line option, listed with its help text and
current value by ``--help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ravdess_ser.errors import INTERRUPTED, PipelineError

PARAMS_FILE = Path("params.yaml")


class _UniqueKeyLoader(yaml.SafeLoader):
    """Refuses a key given twice in one mapping, as DVC's reader does; PyYAML's would keep the last one silently."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_params(section: str, params_file: Path = PARAMS_FILE) -> dict[str, Any]:
    if not params_file.is_file():
        raise PipelineError("params file not found (run the stage from the project root)", params_file)
    try:
        params = yaml.load(params_file.read_text(), Loader=_UniqueKeyLoader) or {}
    except yaml.MarkedYAMLError as error:  # one line: what is wrong, and where
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PipelineError(f"not valid YAML: {error.problem}{where}", params_file) from None
    except yaml.YAMLError as error:
        raise PipelineError(f"not valid YAML: {' '.join(str(error).split())}", params_file) from None
    if section not in params:
        raise PipelineError(f"has no '{section}' section", params_file)
    return params[section]


def _field_parser(annotation) -> tuple[Callable[[str], Any], str | None, str | None]:
    """An argparse ``type``, ``nargs`` and ``metavar`` (None: argparse's own) for a dataclass field's annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _field_parser(inner[0])
    if origin in (tuple, list):
        return typing.get_args(annotation)[0], "*", None
    if origin is dict:
        return yaml.safe_load, None, "YAML"  # e.g. --folds "{'1': [1, 2], '2': [3, 4]}"
    if annotation is bool:
        # The config converts it, as it converts params.yaml's, and refuses what is no bool.
        return str, None, "{true,false}"
    return annotation, None, None


@dataclasses.dataclass(frozen=True)
class StageParams:
    """What a stage reads from params.yaml: ``fields`` (default: all) of ``config_cls``, from ``section``.

    Each stage script declares one as ``PARAMS``; dvc.yaml's params of the stage are derived from it
    (:mod:`ravdess_ser.stage_deps`), less the options its command sets.
    """

    config_cls: type
    section: str
    fields: tuple[str, ...] | None = None

    def __post_init__(self):
        names = [f.name for f in dataclasses.fields(self.config_cls)]
        if self.fields is not None and set(self.fields) - set(names):
            raise ValueError(f"{self.config_cls.__name__} has no field(s) {sorted(set(self.fields) - set(names))}")

    @property
    def read(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.config_cls) if self.fields is None or f.name in self.fields)


#: The params.yaml keys this process's stage read, for the deps audit (``RAVDESS_SER_AUDIT_DIR``).
keys_read: list[str] = []


def parse_stage_config(params: StageParams, description: str, positionals: dict[str, str],
                       argv: list[str] | None = None, params_file: Path = PARAMS_FILE):
    """Build ``params.config_cls`` from its params.yaml section, overridden by command-line options.

    ``positionals`` maps the names of the stage's input/output paths to their help. Every field the stage reads
    must be in params.yaml, and a stage that reads a whole section refuses keys that are no field; the fields it
    does not read keep their defaults and are no options. Returns ``(config, args)``; ``args`` holds the
    positionals as paths.
    """
    hints = typing.get_type_hints(params.config_cls)
    section = params.section
    values = read_params(section, params_file)
    unknown = set(values) - {f.name for f in dataclasses.fields(params.config_cls)}
    if unknown and params.fields is None:
        raise PipelineError(f"'{section}' has unknown keys: {', '.join(sorted(unknown))}", params_file)
    main = getattr(sys.modules.get("__main__"), "__spec__", None)  # `python -m stages.x`, not `x.py`, in the usage
    parser = argparse.ArgumentParser(
        prog=f"python -m {main.name}" if main is not None else None,
        description=description,
        epilog=f"Option defaults are read from the '{section}' section of {params_file}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for name, help_text in positionals.items():
        parser.add_argument(name, type=Path, help=help_text)
    for f in dataclasses.fields(params.config_cls):
        if f.name not in params.read:
            continue
        if f.name not in values:
            raise PipelineError(f"'{section}' has no key '{f.name}' ({f.metadata.get('help', '')})", params_file)
        value_type, nargs, metavar = _field_parser(hints[f.name])
        default = values[f.name]
        default = tuple(default) if isinstance(default, list) else default
        default = _ParamsText(default) if isinstance(default, str) and f.name in values else default
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", dest=f.name, type=_option_type(value_type), nargs=nargs, default=default,
            metavar=metavar, help=f.metadata.get("help", ""),
        )
    args = parser.parse_args(argv)
    given = {token.split("=", 1)[0] for token in (sys.argv[1:] if argv is None else argv)}
    config_values = {}
    for name in params.read:
        value = getattr(args, name)
        config_values[name] = tuple(value) if isinstance(value, list) else value
        if f"--{name.replace('_', '-')}" not in given:
            keys_read.append(f"{section}.{name}")  # from params.yaml, not from an option of the command
    return params.config_cls(**config_values), args


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def _write_audit(directory: str) -> None:
    """Which of the workspace's files this stage process imported, and which params it read (for tests)."""
    root = Path.cwd().resolve()
    files = [Path(m.__file__) for m in list(sys.modules.values()) if isinstance(getattr(m, "__file__", None), str)]
    modules = sorted({f.resolve().relative_to(root).as_posix() for f in files  # some modules name no real file
                      if f.is_absolute() and f.resolve().is_relative_to(root)})
    stage = os.environ.get("DVC_STAGE", "unknown")
    Path(directory, f"{stage}.json").write_text(json.dumps({"modules": modules, "params": sorted(set(keys_read))}))


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main: a PipelineError or an interrupt becomes one line on stderr, not a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # From here an interrupt unwinds, so temporaries are removed (stages/__init__.py exits at once before, while
    # the stage only imports); a stage killed with SIGTERM takes the same clean exit as Ctrl-C.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        main()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    if os.environ.get("RAVDESS_SER_AUDIT_DIR"):
        _write_audit(os.environ["RAVDESS_SER_AUDIT_DIR"])


class _ParamsText(str):
    """A string from params.yaml, which argparse converts as it converts a default."""


def _option_type(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """The option's type; a params.yaml string it cannot convert is left for the config to report on one line
    naming its key (argparse would print its usage and ``argument --layer: invalid int value``)."""
    def parse(text: str):
        if not isinstance(text, _ParamsText):
            try:
                return convert(text)
            except yaml.YAMLError:  # argparse makes its usage error of ValueError, TypeError and this, not of that
                raise argparse.ArgumentTypeError(f"invalid YAML value: {text!r}") from None
        try:
            return convert(str(text))
        except (ValueError, TypeError, yaml.YAMLError):
            return str(text)

    parse.__name__ = getattr(convert, "__name__", "value")  # argparse names it in "invalid int value: 'x'"
    return parse
