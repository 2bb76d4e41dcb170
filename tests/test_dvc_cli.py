"""ravdess_ser.dvc_cli: dvc.lock rewritten stage by stage has the bytes of DVC's whole rewrite."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from dvc.utils.serialize import modify_yaml

from ravdess_ser import dvc_cli
from dvc_project import REPO_ROOT, dvc, git, run

LOCK = REPO_ROOT / "dvc.lock"


def _entry(name: str, md5: str) -> dict:
    return {"cmd": f"python -m stages.{name} 'a: b' # c", "deps": [{"path": "x.py", "hash": "md5", "md5": md5,
                                                                   "size": 3}],
            "params": {"params.yaml": {"train.lr": 1e-05, "train.folds": {1: [1, 2]}, "x": None, "y": True}},
            "outs": [{"path": f"out/{name}", "hash": "md5", "md5": md5 + ".dir", "size": 10, "nfiles": 2}]}


def _changes():
    """Each a function that updates a lock document as Lockfile.dump_stages does: replacing or adding entries."""
    stages = list(yaml.safe_load(LOCK.read_text())["stages"])
    yield lambda data: data["stages"].update({stages[0]: _entry("a", "0" * 32)})
    yield lambda data: data["stages"].update({"new@1": _entry("b", "1" * 32)})
    yield lambda data: data["stages"].update({stages[-1]: _entry("c", "2" * 32), "new@1": _entry("b", "3" * 32)})
    yield lambda data: None  # a stage whose entry did not change


def test_each_rewrite_has_the_bytes_of_dvcs_own(tmp_path, monkeypatch):
    monkeypatch.setattr(dvc_cli, "_written", {})
    ours, theirs = tmp_path / "ours" / "dvc.lock", tmp_path / "theirs" / "dvc.lock"
    for path in (ours, theirs):
        path.parent.mkdir()
        shutil.copy(LOCK, path)
    for number, change in enumerate(_changes()):
        with dvc_cli.modify_lock_yaml(ours) as data:
            change(data)
        with modify_yaml(theirs) as data:
            change(data)
        assert ours.read_text() == theirs.read_text(), f"change {number}"
        assert os.path.abspath(ours) in dvc_cli._written  # the next rewrite parses nothing
    # Written by someone else in between: parsed again, not overwritten with what was last written here.
    theirs.write_text(theirs.read_text().replace("0" * 32, "f" * 32))
    shutil.copy(theirs, ours)
    for change in _changes():
        with dvc_cli.modify_lock_yaml(ours) as data:
            change(data)
        with modify_yaml(theirs) as data:
            change(data)
        assert ours.read_text() == theirs.read_text()


def test_a_document_that_does_not_split_into_entries_is_rewritten_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(dvc_cli, "_written", {})
    ours, theirs = tmp_path / "a" / "dvc.lock", tmp_path / "b" / "dvc.lock"
    shared = [{"path": "x", "md5": "0" * 32}]  # one list in two entries: an anchor and an alias in the whole dump
    for path in (ours, theirs):
        path.parent.mkdir()
        with modify_yaml(path) as data:
            data.update({"schema": "2.0", "stages": {"a": {"deps": shared}, "b": {"deps": shared}}})
    for _ in range(2):
        with dvc_cli.modify_lock_yaml(ours) as data:
            data["stages"]["c"] = {"cmd": "true"}
        with modify_yaml(theirs) as data:
            data["stages"]["c"] = {"cmd": "true"}
        assert ours.read_text() == theirs.read_text()
        assert "&id" in ours.read_text() and not dvc_cli._written


@pytest.mark.slow
def test_repro_writes_the_lock_file_dvc_repro_writes(tmp_path):
    """A real pipeline run, then a change that reruns some of its stages: the same dvc.lock both ways."""
    def project(folder: Path) -> Path:
        folder.mkdir()
        git(folder, "init", "-q")
        dvc(folder, "init", "-q")
        (folder / "params.yaml").write_text("n: 3\nlr: 1.0e-05\n")
        (folder / "src.txt").write_text("a\n")
        (folder / "dvc.yaml").write_text(
            "stages:\n"
            "  copy:\n    foreach: [a, b, c]\n    do:\n      cmd: cp src.txt out_${item}.txt\n"
            "      deps: [src.txt]\n      outs:\n      - out_${item}.txt\n"
            "  join:\n    cmd: cat out_a.txt out_b.txt out_c.txt > joined.txt\n    params: [n, lr]\n"
            "    deps: [out_a.txt, out_b.txt, out_c.txt]\n    outs: [joined.txt]\n")
        return folder

    ours, theirs = project(tmp_path / "ours"), project(tmp_path / "theirs")
    for step in range(2):
        run([sys.executable, "-m", "ravdess_ser.dvc_cli", "repro"], ours, env={"PYTHONPATH": str(REPO_ROOT)})
        dvc(theirs, "repro")
        assert (ours / "dvc.lock").read_text() == (theirs / "dvc.lock").read_text(), f"step {step}"
        for folder in (ours, theirs):
            (folder / "src.txt").write_text("b\n")
