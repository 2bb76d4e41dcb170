"""dvc.yaml's code deps and params are what the stages use, and params.yaml is where every default lives."""

from __future__ import annotations

import dataclasses
import importlib
import shutil

import pytest
import yaml

from conftest import REPO_ROOT
from ravdess_ser.stage_deps import differences

DEFINITIONS = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
SCRIPTS = sorted(path.stem for path in (REPO_ROOT / "stages").glob("*.py") if path.stem != "__init__")


def test_dvc_yaml_lists_exactly_what_every_stage_imports_and_reads():
    assert differences(REPO_ROOT, DEFINITIONS) == [], "run `python -m ravdess_ser.stage_deps` to update dvc.yaml"


@pytest.fixture
def copy(tmp_path):
    for name in ("stages", "ravdess_ser"):
        shutil.copytree(REPO_ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "requirements.txt", tmp_path)
    return tmp_path


def test_the_check_sees_an_import_added_in_a_function_body(copy):
    script = copy / "stages" / "crossval.py"
    script.write_text(script.read_text().replace("def main() -> None:\n",
                                                 "def main() -> None:\n    from ravdess_ser import report  # noqa\n"))
    assert differences(copy, DEFINITIONS) == [
        "dvc.yaml: stage crossval does not list ravdess_ser/report.py, which it uses"]


def test_the_check_sees_an_import_removed_from_a_library_module(copy):
    module = copy / "ravdess_ser" / "train.py"
    module.write_text(module.read_text().replace("from ravdess_ser.device import resolve_device\n", ""))
    # crossval and layer-sweep import device through training_pool.py as well; train only through train.py.
    assert differences(copy, DEFINITIONS) == [
        "dvc.yaml: stage train lists ravdess_ser/device.py, which it does not use"]


def test_the_check_sees_a_param_added_to_and_removed_from_a_stage(monkeypatch):
    definitions = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    definitions["crossval"]["params"].append("train.fold")
    definitions["layer-sweep"]["params"].remove("train.patience")
    assert differences(REPO_ROOT, definitions) == [
        "dvc.yaml: stage crossval lists train.fold, which it does not use",
        "dvc.yaml: stage layer-sweep does not list train.patience, which it uses"]


def test_a_stage_that_reads_its_whole_section_lists_the_section():
    params = {name: definition.get("do", definition)["params"] for name, definition in DEFINITIONS.items()}
    assert [params[stage] for stage in ("download", "resample", "embed", "train")] == [
        ["data"], ["resample"], ["embed"], ["train"]]
    # train reads every key of its section; crossval all but the fold
    assert "train.fold" not in DEFINITIONS["crossval"]["params"] and "train.seeds" in DEFINITIONS["crossval"]["params"]


def test_an_option_in_the_command_is_not_a_param():
    definitions = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    definitions["train"]["cmd"] = definitions["train"]["cmd"].replace("stages.train", "stages.train --fold 2")
    problems = differences(REPO_ROOT, definitions)
    # No longer all of the section from params.yaml: each key it reads there, and not the fold.
    assert "dvc.yaml: stage train lists train, which it does not use" in problems
    assert "dvc.yaml: stage train does not list train.protocol, which it uses" in problems
    assert not [problem for problem in problems if "train.fold," in problem]


def _canonical(value):
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    return value


@pytest.mark.parametrize("script", SCRIPTS)
def test_params_yaml_holds_the_code_default_of_every_key_a_stage_reads(script):
    stage_params = importlib.import_module(f"stages.{script}").PARAMS
    section = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())[stage_params.section]
    defaults = {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
                for f in dataclasses.fields(stage_params.config_cls)}
    for name in stage_params.read:
        assert name in section, f"params.yaml: {stage_params.section}.{name} is missing"
        assert _canonical(section[name]) == _canonical(defaults[name]), (
            f"params.yaml: {stage_params.section}.{name} is {section[name]!r}, its code default "
            f"{defaults[name]!r}")


def test_every_key_of_params_yaml_is_read_by_some_stage():
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    read = {f"{p.section}.{name}" for p in (importlib.import_module(f"stages.{s}").PARAMS for s in SCRIPTS)
            for name in p.read}
    assert {f"{section}.{key}" for section, values in params.items() for key in values} == read


def test_the_committed_dvc_lock_records_exactly_the_stages_of_dvc_yaml():
    """`dvc repro` updates the entries of the stages it runs and keeps every other, so the entries of a stage taken
    out of dvc.yaml stay in dvc.lock, recording outputs that nothing makes any more, until they are removed by hand."""
    from dvc.repo import Repo

    with Repo(str(REPO_ROOT)) as repo:
        stages = {stage.addressing for stage in repo.index.stages}
    locked = set(yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())["stages"])
    assert (locked - stages, stages - locked) == (set(), set()), "(entries without a stage, stages without an entry)"
