"""Killing the embed stage mid-actor under `dvc repro`: nothing half-written, and the rerun matches.

One project runs every stage but embed@02 and those after it, and is committed. A copy of it runs
`dvc repro embed@02` uninterrupted: the reference. Other copies are interrupted while embed@02 is writing,
by SIGINT, SIGTERM or SIGKILL sent to the stage process. No temporary or truncated .npy may be left looking
complete, and the next `dvc repro embed@02` must end with exactly the reference's outputs (same hashes in
dvc.lock).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from dvc_project import BIN, TINY_PARAMS, copy_project, dvc, environment, git, make_project, stages_run
from ravdess_ser.atomic import TEMP_PREFIX

pytestmark = pytest.mark.dvc  # builds DVC projects (minutes): not in `make test-fast`

# Longer clips, so that embedding one actor takes long enough to be caught in the middle.
PARAMS = {"data": TINY_PARAMS["data"] | {"synthetic_clip_seconds": 2.5}, "train": TINY_PARAMS["train"]}


def _outputs(project) -> dict[str, str]:
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


@pytest.fixture(scope="module")
def before_embed_02(tmp_path_factory) -> Path:
    """The project with the corpus, its resampling and the other actors' embeddings, committed."""
    project = make_project(tmp_path_factory.mktemp("before-embed-02") / "project", PARAMS)
    ran = stages_run(dvc(project, "repro", "embed@01", "resample@02", "embed@03").stdout)
    assert ran == {"download", "resample@01", "resample@02", "resample@03", "embed@01", "embed@03"}
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "every stage before embed@02")
    return project


@pytest.fixture(scope="module")
def reference(before_embed_02, tmp_path_factory):
    project = copy_project(before_embed_02, tmp_path_factory.mktemp("reference") / "project")
    dvc(project, "repro", "embed@02")  # what follows embed@02 is the pipeline's own test (test_pipeline_dvc)
    return _outputs(project)


def _cwd(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:  # gone, or not ours to read
        return None


def _stage_pid(project: Path, command: str) -> int | None:
    # Anchored: DVC runs the command through $SHELL, or /bin/sh when SHELL is unset, and dash does not exec a
    # `-c` command, so an unanchored match can find the shell, whose death leaves the stage running. In this
    # project only: another test's repro may run the same command line in its own project.
    found = subprocess.run(["pgrep", "-f", f"^{command}"], capture_output=True, text=True).stdout.split()
    found = [pid for pid in found if _cwd(pid) == str(project.resolve())]
    assert len(found) <= 1, f"more than one process runs {command}"
    return int(found[0]) if found else None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_killed_embed_stage_leaves_nothing_half_written_and_rerun_matches(tmp_path, before_embed_02, reference, sig):
    project = copy_project(before_embed_02, tmp_path / "project")
    embeddings = project / "experiments/audio_embeddings/Actor_02"
    repro = subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=project, env=environment(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    command = f"python -m stages.embed data/audio_16k/Actor_02 {embeddings.relative_to(project)}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list(embeddings.glob("*.npy"))) < 5:
        time.sleep(0.01)
    pid = _stage_pid(project, command)
    assert pid is not None, "embed@02 was not running"
    subprocess.run(["kill", f"-{sig.value}", str(pid)], check=True)
    output, _ = repro.communicate(timeout=120)
    assert repro.returncode != 0, output
    time.sleep(1.0)  # the worker abandons the job at its next progress write

    written = list(embeddings.glob("*.npy")) if embeddings.exists() else []
    assert len(written) < 60, "the stage finished before it was interrupted"
    assert not list(project.rglob(TEMP_PREFIX + "*"))
    for path in written:
        np.load(path)  # complete and readable, or not there at all

    rerun = dvc(project, "repro", "embed@02")
    assert "Running stage 'embed@02'" in rerun.stdout
    assert _outputs(project) == reference
