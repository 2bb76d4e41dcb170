"""A copy of this project in a temporary git repo, with real `dvc` run on it.

The copy holds what a clone holds (pipeline, code, committed model, DVC
config), with params shrunk to a tiny corpus so a full `dvc repro` takes
seconds rather than minutes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROJECT_FILES = ["dvc.yaml", "params.yaml", "requirements.txt", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore", ".dvc/plots",
                 "stages", "ravdess_ser", "models"]
TINY_PARAMS = {
    "data": {"actors": ["01", "02", "03"], "synthetic_clip_seconds": 0.6},
    # One actor per fold: the train stage tests on actor 1, validates on 2 and trains on 3.
    "train": {"protocol": "custom", "folds": {"1": [1], "2": [2], "3": [3]}, "fold": "1", "max_epochs": 4,
              "patience": 2, "hidden_size": 32},
}
# The stages that train and evaluate classifiers: what a train param reruns.
TRAINING_STAGES = {"train", "crossval", "layer-sweep"}


def environment() -> dict[str, str]:
    env = dict(os.environ)
    # Stage commands call `python`: it must be this interpreter, with the project installed.
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com", HF_HUB_OFFLINE="1")
    env.pop("DVC_SITE_CACHE_DIR", None)
    return env


def run(args: list[str], cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=environment() | (env or {}), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def dvc(cwd: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    return run([str(BIN / "dvc"), *args], cwd, check, env)


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["git", *args], cwd, check)


class _ParamsDumper(yaml.SafeDumper):
    """Quotes digit strings such as actor codes '08': DVC reads YAML 1.2, where a bare 08 is the number 8."""


_ParamsDumper.add_representer(
    str, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style="'" if value.isdigit() else None)
)


def update_params(project: Path, changes: dict) -> None:
    params_file = project / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    for section, values in changes.items():
        params.setdefault(section, {}).update(values)
    params_file.write_text(yaml.dump(params, Dumper=_ParamsDumper, sort_keys=False))


def make_project(dest: Path, params: dict | None = None) -> Path:
    """Copy the project to ``dest``, shrink its params, and commit it as a fresh git repo."""
    dest.mkdir(parents=True)
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__", "tmp"))
        elif source.exists():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    update_params(dest, TINY_PARAMS if params is None else params)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "project")
    return dest


def copy_project(source: Path, dest: Path) -> Path:
    """A byte-for-byte copy of a project: workspace, git history, dvc.lock, DVC cache and run-cache.

    Not a clone: the copy already has every output, as if it had run what ``source`` ran. DVC keys its
    site cache (state, index) by the project's path, so the copy shares nothing with ``source``.
    """
    shutil.copytree(source, dest, symlinks=True)
    return dest


# `target` and the stages before it, deps first (DVC's own graph, as `dvc repro` orders them), as JSON
# [[stage, command], ...].
_STAGES_BEFORE = """
import json, sys
import networkx
from dvc.repo import Repo
repo = Repo(".")
(target,) = repo.stage.collect(sys.argv[1])
print(json.dumps([[stage.addressing, stage.cmd] for stage in networkx.dfs_postorder_nodes(repo.index.graph, target)]))
"""
# Runs each `python -m stages.<name> ARGS...` command given as JSON, in this one process, as its `__main__`.
_COMMANDS_IN_ONE_PROCESS = """
import json, runpy, sys
for command in json.loads(sys.argv[1]):
    sys.argv = command[2:]
    runpy.run_module(command[2], run_name="__main__", alter_sys=True)
"""


def repro_in_one_process(project: Path, target: str) -> list[str]:
    """What `dvc repro target` does, with every stage's command run in one Python process, then `dvc commit`.

    For a test whose subject comes after many stages (24 actors: 49 stages before the manifest): the same commands
    in the same order, with the same params.yaml, but without a fresh interpreter, torch import and DVC bookkeeping
    per stage. `dvc commit` then records them in dvc.lock as `dvc repro` would have. Returns the stages that ran.
    """
    stages = json.loads(run([sys.executable, "-c", _STAGES_BEFORE, target], project).stdout)
    commands = [command.split() for _, command in stages]
    assert all(c[:2] == ["python", "-m"] and c[2].startswith("stages.") for c in commands), stages
    run([sys.executable, "-c", _COMMANDS_IN_ONE_PROCESS, json.dumps(commands)], project,
        env={"RAVDESS_SER_WORKER": "0"})  # the jobs in this process too, not in a warm worker
    # Twice: the first pass writes each per-actor output's .gitignore into the folders that a later stage (the
    # manifest) depends on, after it has hashed them; `dvc repro` writes it before the later stage runs.
    for _ in range(2):
        dvc(project, "commit", "--force", "--with-deps", target)
    assert json.loads(dvc(project, "status", "--json", "--with-deps", target).stdout) == {}
    return [name for name, _ in stages]


def stages_run(output: str) -> set[str]:
    """Stages that `dvc repro` / `dvc exp run` executed (not skipped, not restored from the run-cache)."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def stages_restored(output: str) -> set[str]:
    """Stages that `dvc repro` / `dvc exp run` checked out from the cache instead of running.

    That is a run-cache hit, or a stage whose dvc.lock entry matches but whose outputs were
    missing from the workspace. dvc 3.67.1 has one wording for both (dvc/stage/cache.py).
    """
    return set(re.findall(r"Stage '([^']+)' is cached - skipping run, checking out outputs", output))


# ----------------------------------------------------------------------------- sharing through a remote
# Used by tests/test_remote.py.


def clone(source: Path, dest: Path) -> Path:
    """``git clone`` of a project: it shares nothing with ``source`` but git (its DVC cache starts empty)."""
    git(dest.parent, "clone", "-q", str(source), dest.name)
    return dest


def stages_pulled(output: str) -> set[str]:
    """Stages whose outputs `dvc repro --pull` downloaded instead of running them."""
    return set(re.findall(r"Pulling data for stage: '([^']+)'", output))
