"""What DVC records is what ran: queued and --temp experiments, second clones and an unactivated venv.

Each project here is a copy of this repo in a temporary git repo, so the venv's editable install (which points at
the repo itself) holds the *other* code: a stage that imported the installed package instead of its workspace's
would miss every change made below.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dvc_project import BIN, copy_project, dvc, environment, git

pytestmark = pytest.mark.dvc  # builds DVC projects (minutes): not in `make test-fast`

MARKER = "    metrics = aggregate_runs(results, protocol)\n"
MARKED = "    metrics = aggregate_runs(results, protocol) | {\"code_marker\": 42}\n"


def _mark(project: Path) -> None:
    """Change the crossval report's code so that its metrics gain a key."""
    module = project / "ravdess_ser" / "crossval.py"
    text = module.read_text()
    assert text.count(MARKER) == 1
    module.write_text(text.replace(MARKER, MARKED))


def _crossval_metrics(project: Path) -> dict:
    return json.loads((project / "experiments/crossval/metrics.json").read_text())


@pytest.fixture(scope="module")
def project(reproduced_project, tmp_path_factory):
    """A copy of the session's reproduced project (conftest.py), its repro committed."""
    return copy_project(reproduced_project.path, tmp_path_factory.mktemp("experiments") / "project")


def _run_queue(project: Path) -> None:
    dvc(project, "queue", "start", "-j", "1")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = dvc(project, "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    dvc(project, "queue", "stop", check=False)
    status = dvc(project, "queue", "status").stdout
    assert "Failed" not in status, status + dvc(project, "queue", "logs", status.split()[0], check=False).stdout


def _applied(project: Path, name: str) -> dict:
    dvc(project, "exp", "apply", name)
    metrics = _crossval_metrics(project)
    git(project, "checkout", "--", ".")
    dvc(project, "checkout", "--force")
    return metrics


def test_a_queued_experiment_runs_its_own_snapshot_of_the_code(project):
    _mark(project)
    dvc(project, "exp", "run", "--queue", "-n", "marked")
    git(project, "checkout", "--", "ravdess_ser/crossval.py")  # the workspace goes back before the queue runs
    dvc(project, "exp", "run", "--queue", "-n", "plain", "-S", "train.seed=1")
    _mark(project)  # and changes again after queueing: the plain experiment must not see it
    _run_queue(project)
    git(project, "checkout", "--", "ravdess_ser/crossval.py")
    assert _applied(project, "marked")["code_marker"] == 42
    assert "code_marker" not in _applied(project, "plain")


def test_a_temp_experiment_runs_its_own_snapshot_of_the_code(project):
    _mark(project)
    try:
        dvc(project, "exp", "run", "--temp", "-n", "temp-marked")
    finally:
        git(project, "checkout", "--", "ravdess_ser/crossval.py")
    assert _applied(project, "temp-marked")["code_marker"] == 42
    assert "code_marker" not in _crossval_metrics(project)


def _path_without_the_venv(tmp_path: Path) -> str:
    """A PATH whose `python` is the venv's base interpreter, which has none of the project's packages."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    base = Path(sys.base_prefix) / "bin" / "python3"
    (bin_dir / "python").unlink(missing_ok=True)
    (bin_dir / "python").symlink_to(base)
    return f"{bin_dir}:/usr/bin:/bin"


def test_the_venvs_dvc_without_activation_runs_the_stages_with_the_projects_interpreter(project, tmp_path):
    env = environment() | {"PATH": _path_without_the_venv(tmp_path)}
    venv = project / ".venv"
    venv.symlink_to(BIN.parent)  # where `make install` puts it
    try:
        result = subprocess.run([str(BIN / "dvc"), "exp", "run", "-S", "train.dropout=0.5"], cwd=project, env=env,
                                capture_output=True, text=True)
    finally:
        venv.unlink()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert json.loads((project / "experiments/train/metrics.json").read_text())["test"]["accuracy"] >= 0
    git(project, "checkout", "--", ".")
    dvc(project, "checkout", "--force")


def test_an_interpreter_without_the_packages_stops_the_stage_with_one_line(project, tmp_path):
    env = environment() | {"PATH": _path_without_the_venv(tmp_path)}
    result = subprocess.run([str(BIN / "dvc"), "repro", "--force", "-s", "crossval"], cwd=project, env=env,
                            capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "lacks the project's pinned packages" in errors[0], output
    assert errors[0].startswith(f"error: {tmp_path / 'bin' / 'python'} "), output  # names the interpreter
    git(project, "checkout", "--", ".")
    dvc(project, "checkout", "--force")


def test_two_clones_with_different_code_embedding_at_once_each_get_their_own(project, tmp_path):
    clones = {}
    for name in ("a", "b"):
        clones[name] = tmp_path / name
        git(tmp_path, "clone", "-q", str(project), name)
    embed = clones["b"] / "ravdess_ser" / "embed.py"
    text = embed.read_text()
    anchor = "        save_embedding(target, features, embedder.config.storage)\n"
    assert anchor in text
    embed.write_text(text.replace(anchor, "        features = features * 0.0\n" + anchor))
    env = environment() | {"RAVDESS_SER_WORKER": "1", "XDG_RUNTIME_DIR": ""}
    for clone in clones.values():
        dvc(clone, "repro", "resample@01")
    running = {name: subprocess.Popen([sys.executable, "-m", "stages.embed", "data/audio_16k/Actor_01", "out"],
                                      cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for name, clone in clones.items()}
    for name, process in running.items():
        assert process.wait(timeout=300) == 0, process.stdout.read()
    first = sorted((clones["a"] / "out").glob("*.npy"))
    assert len(first) == 60
    assert all(np.abs(np.load(path)).max() > 0 for path in first)
    assert all(np.abs(np.load(clones["b"] / "out" / path.name)).max() == 0 for path in first)
