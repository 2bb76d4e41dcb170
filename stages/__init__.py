"""The pipeline's stage scripts, run by DVC as ``python -m stages.<name>`` from the workspace root.

``-m`` puts the workspace DVC runs in first on ``sys.path``, so a stage always imports this workspace's
``ravdess_ser`` (a queued or ``--temp`` experiment's own copy, a second clone's), never the copy an editable
install points at. Importing this package first makes sure the interpreter is one that has the pinned packages of
``requirements.txt``: ``python`` on PATH may be another one (``.venv/bin/dvc`` run without activating the venv, a
conda base env). Then the stage re-runs itself with the project's interpreter: ``$RAVDESS_SER_PYTHON``, else the
``.venv`` of the workspace or of the repo DVC runs from; with none to be found it stops with one line. Only the
standard library is used here, since the interpreter may have nothing else. Until the stage's ``run_stage``
takes over, Ctrl-C or SIGTERM (while torch is imported, say) ends it with the one "interrupted" line.
"""

from __future__ import annotations

import os
import signal
import sys
from importlib import metadata
from pathlib import Path

from ravdess_ser.errors import INTERRUPTED  # the standard library only

WORKSPACE = Path(__file__).resolve().parent.parent
REQUIREMENTS = WORKSPACE / "requirements.txt"
_REEXEC_MARK = "RAVDESS_SER_REEXEC"


def pinned_requirements(path: Path = REQUIREMENTS) -> dict[str, str]:
    """``name==version`` lines of a requirements file, as {name: version}."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip()] = version.strip()
    return pins


def missing_requirements(pins: dict[str, str]) -> list[str]:
    """What this interpreter lacks of ``pins``: ``name==version (has X)`` or ``name==version (not installed)``."""
    missing = []
    for name, version in pins.items():
        try:
            found = metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(f"{name}=={version} (not installed)")
            continue
        if found != version:
            missing.append(f"{name}=={version} (has {found})")
    return missing


def _candidate_interpreters() -> list[Path]:
    named = os.environ.get("RAVDESS_SER_PYTHON")
    roots = [WORKSPACE, *([Path(os.environ["DVC_ROOT"])] if os.environ.get("DVC_ROOT") else [])]
    found = [Path(named)] if named else [root / ".venv" / "bin" / "python" for root in roots]
    return [path for path in found if path.is_file() and os.access(path, os.X_OK)]


def require_project_interpreter() -> None:
    missing = missing_requirements(pinned_requirements())
    if not missing:
        return
    if not os.environ.get(_REEXEC_MARK):
        for python in _candidate_interpreters():
            if python.absolute() != Path(sys.executable).absolute():
                os.environ[_REEXEC_MARK] = "1"
                os.execv(python, [str(python), *sys.orig_argv[1:]])
    print(f"error: {sys.executable} lacks the project's pinned packages ({', '.join(missing[:3])}"
          f"{', ...' if len(missing) > 3 else ''}): run `make install`, or set RAVDESS_SER_PYTHON to an "
          "interpreter that has requirements.txt installed", file=sys.stderr)
    sys.exit(1)


def _interrupted_while_starting(signum, frame):
    # Nothing is written yet while a stage imports torch & co: leave at once, with the one line.
    print(INTERRUPTED, file=sys.stderr, flush=True)
    os._exit(130)


signal.signal(signal.SIGINT, _interrupted_while_starting)
signal.signal(signal.SIGTERM, _interrupted_while_starting)
require_project_interpreter()
