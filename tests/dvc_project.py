"""A copy of this project in a temporary git repo, with real `dvc` run on it.

The copy holds what a clone holds (pipeline, code, committed model, DVC
config), with params shrunk to a tiny corpus so a full `dvc repro` takes
seconds rather than minutes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROJECT_FILES = ["dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore",
                 "stages", "ravdess_ser", "models"]
TINY_PARAMS = {
    "data": {"actors": ["01", "02", "03"], "synthetic_clip_seconds": 0.6},
    "train": {"val_actors": [2], "test_actors": [3], "max_epochs": 4, "patience": 2, "hidden_size": 32},
}


def environment() -> dict[str, str]:
    env = dict(os.environ)
    # Stage commands call `python`: it must be this interpreter, with the project installed.
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com", HF_HUB_OFFLINE="1")
    env.pop("DVC_SITE_CACHE_DIR", None)
    return env


def run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=environment(), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(BIN / "dvc"), *args], cwd, check)


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["git", *args], cwd, check)


def update_params(project: Path, changes: dict) -> None:
    params_file = project / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    for section, values in changes.items():
        params.setdefault(section, {}).update(values)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))


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


def stages_run(output: str) -> set[str]:
    """Stages that `dvc repro` / `dvc exp run` executed (not skipped, not restored from the run-cache)."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def stages_restored(output: str) -> set[str]:
    return set(re.findall(r"Stage '([^']+)' is cached - skipping run, checking out outputs", output)) | set(
        re.findall(r"Restored stage '([^']+)' from run-cache", output))
