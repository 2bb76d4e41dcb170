"""Each stage's code deps and params in dvc.yaml, derived from what its script imports and reads.

A stage's code is its script, ``stages/__init__.py`` (the interpreter check), ``requirements.txt`` (the pinned
libraries) and every module of this package that the script imports, directly or through other modules, at the
top of a file or inside a function (lazy imports count: they run). Its params are the fields its ``PARAMS``
(:class:`ravdess_ser.cli.StageParams`) reads, less those its command sets as options (``--fold 2``), or the whole
section where it reads all of it (:func:`stage_params`).

``python -m ravdess_ser.stage_deps`` rewrites dvc.yaml's lists to match (keeping comments and the data deps);
``--check`` only reports the differences, as the test suite does. A stage's other deps (data folders, models)
stay as written.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import io
import re
import sys
from pathlib import Path

CODE_PREFIXES = ("stages/", "ravdess_ser/")
REQUIREMENTS = "requirements.txt"
_SCRIPT = re.compile(r"python -m stages\.(\w+)")
_OPTION = re.compile(r"(?<!\S)--([a-z][a-z0-9-]*)")


def _imported_modules(source: Path, root: Path) -> set[Path]:
    """The package's module files that ``source`` imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from ravdess_ser import portable_math` imports a module; `from ravdess_ser.x import y`, module x.
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != "ravdess_ser":
                continue
            found.add(root / "ravdess_ser" / "__init__.py")
            module = root.joinpath(*parts).with_suffix(".py")
            if len(parts) > 1 and module.is_file():
                found.add(module)
    return found


def code_deps(script: Path, root: Path) -> list[str]:
    """Paths, relative to ``root``, of the code a stage script runs (see the module docstring)."""
    seen: set[Path] = set()
    pending = [script, root / "stages" / "__init__.py"]
    while pending:
        source = pending.pop()
        if source in seen:
            continue
        seen.add(source)
        pending.extend(_imported_modules(source, root) - seen)
    files = seen | {root / REQUIREMENTS}
    return sorted(path.relative_to(root).as_posix() for path in files)


def stage_params(script_module: str, cmd: str) -> list[str]:
    """``section.field`` for every field the stage's ``PARAMS`` reads and its command does not set; the whole
    ``section`` where the stage reads all of it from params.yaml. Such a stage refuses a key of the section that
    is no field, and DVC, tracking the whole section for it, runs it when such a key is added: the typo is
    reported at once instead of when the stage next runs for another reason."""
    params = importlib.import_module(script_module).PARAMS
    options = {option.replace("-", "_") for option in _OPTION.findall(cmd)}
    if params.fields is None and not options & set(params.read):
        return [params.section]
    return [f"{params.section}.{name}" for name in params.read if name not in options]


def derived(root: Path, definitions: dict) -> dict[str, dict[str, list[str]]]:
    """For each stage of dvc.yaml's ``stages``: ``{"code": [...], "params": [...]}``."""
    result = {}
    for name, definition in definitions.items():
        body = definition.get("do", definition)
        match = _SCRIPT.search(body["cmd"])
        if match is None:
            raise ValueError(f"dvc.yaml: stage {name}'s cmd does not run `python -m stages.<script>`")
        result[name] = {"code": code_deps(root / "stages" / f"{match.group(1)}.py", root),
                        "params": stage_params(f"stages.{match.group(1)}", body["cmd"])}
    return result


def _is_code(dep: str) -> bool:
    return dep.startswith(CODE_PREFIXES) or dep == REQUIREMENTS


def differences(root: Path, definitions: dict) -> list[str]:
    """One line per dep or param that dvc.yaml lists and the stage does not use, or the other way round."""
    lines = []
    for name, want in derived(root, definitions).items():
        body = definitions[name].get("do", definitions[name])
        have = {"code": [dep for dep in body.get("deps", []) if _is_code(dep)], "params": body.get("params", [])}
        for kind in ("code", "params"):
            for extra in sorted(set(have[kind]) - set(want[kind])):
                lines.append(f"dvc.yaml: stage {name} lists {extra}, which it does not use")
            for missing in sorted(set(want[kind]) - set(have[kind])):
                lines.append(f"dvc.yaml: stage {name} does not list {missing}, which it uses")
    return lines


def rewrite(dvc_yaml: Path) -> bool:
    """Make dvc.yaml's code deps and params what the stages use; True if the file changed."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.width = 120
    text = dvc_yaml.read_text()
    document = yaml.load(text)
    for name, want in derived(dvc_yaml.parent, document["stages"]).items():
        body = document["stages"][name].get("do", document["stages"][name])
        data = [dep for dep in body.get("deps", []) if not _is_code(dep)]
        body["deps"] = data + want["code"]
        body["params"] = want["params"]
    out = io.StringIO()
    yaml.dump(document, out)
    if out.getvalue() == text:
        return False
    dvc_yaml.write_text(out.getvalue())
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="report differences and exit 1 if any; change nothing")
    parser.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"))
    args = parser.parse_args(argv)
    root = args.dvc_yaml.resolve().parent
    sys.path.insert(0, str(root))
    if args.check:
        import yaml

        lines = differences(root, yaml.safe_load(args.dvc_yaml.read_text())["stages"])
        print("\n".join(lines) or "dvc.yaml lists exactly what every stage uses")
        return 1 if lines else 0
    print(f"{args.dvc_yaml}: {'rewritten' if rewrite(args.dvc_yaml) else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
