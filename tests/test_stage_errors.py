"""Stage scripts on bad input: one line on stderr naming the problem, exit 1, no traceback."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO_ROOT, tone, write_wav
from dvc_project import update_params


def _stage(tmp_path, script, *args, params=None):
    """Run ``python -m stages.<script>`` in ``tmp_path``, with the repo's params.yaml changed by ``params``."""
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path)
    update_params(tmp_path, params or {})
    return subprocess.run([sys.executable, "-m", f"stages.{script.removesuffix('.py')}", *map(str, args)],
                          cwd=tmp_path, env=os.environ | {"PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True)


def _assert_one_line_error(result, *fragments):
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]


def test_download_with_a_missing_local_zip(tmp_path):
    result = _stage(tmp_path, "download.py", "data/raw",
                    params={"data": {"source": "zip", "zip_path": "nowhere/corpus.zip"}})
    _assert_one_line_error(result, "nowhere/corpus.zip")
    assert not (tmp_path / "data/raw").exists()


def test_download_refuses_a_zip_bomb_in_one_line(tmp_path):
    import hashlib
    import zipfile

    with zipfile.ZipFile(tmp_path / "corpus.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("Actor_01/03-01-01-01-01-01-01.wav", bytes(80 << 20))
    md5 = hashlib.md5((tmp_path / "corpus.zip").read_bytes()).hexdigest()
    result = _stage(tmp_path, "download.py", "data/raw",
                    params={"data": {"source": "zip", "zip_path": "corpus.zip", "md5": md5, "actors": ["01"]}})
    _assert_only_line(result, "error: corpus.zip: member 'Actor_01/03-01-01-01-01-01-01.wav' inflates to 80.0 MiB, "
                              "beyond the 64.0 MiB limit for one file; refusing to extract (not a RAVDESS archive, "
                              "or a zip bomb)")
    assert not (tmp_path / "data").exists()


def test_download_with_an_unknown_source(tmp_path):
    _assert_one_line_error(_stage(tmp_path, "download.py", "data/raw", params={"data": {"source": "ftp"}}),
                           "data.source='ftp' is not one of synthetic, ravdess, zip")


@pytest.mark.slow
def test_embed_with_a_missing_model_folder(tmp_path):
    write_wav(tmp_path / "16k/Actor_01/03-01-01-01-01-01-01.wav", tone(0.5, 16_000), 16_000)
    result = _stage(tmp_path, "embed.py", "16k/Actor_01", "emb/Actor_01", params={"embed": {"model": "./models/missing"}})
    _assert_one_line_error(result, "models/missing", "model folder does not exist")


def test_embed_with_a_file_given_as_the_model_folder(tmp_path):
    write_wav(tmp_path / "16k/Actor_01/03-01-01-01-01-01-01.wav", tone(0.5, 16_000), 16_000)
    (tmp_path / "README.md").write_text("not a model\n")
    result = _stage(tmp_path, "embed.py", "16k/Actor_01", "emb/Actor_01", params={"embed": {"model": "README.md"}})
    _assert_one_line_error(result, "README.md", "is a file, not a model folder")


def test_embed_refuses_a_sample_rate_its_model_does_not_take(tmp_path):
    # resample.sample_rate: 8000 wrote these; the embed stage used to skip every clip and succeed with none.
    for name in ("03-01-01-01-01-01-01.wav", "03-01-02-01-01-01-01.wav"):
        write_wav(tmp_path / "16k/Actor_01" / name, tone(0.5, 8_000), 8_000)
    model = REPO_ROOT / "models" / "wav2vec2-tiny-random"
    result = _stage(tmp_path, "embed.py", "16k/Actor_01", "emb/Actor_01", params={"embed": {"model": str(model)}})
    _assert_only_line(result, f"error: 16k/Actor_01: the clips are 8000 Hz (e.g. 03-01-01-01-01-01-01.wav), but the "
                              f"model {model} takes 16000 Hz only (its feature extractor's sampling_rate); "
                              "set resample.sample_rate: 16000")
    assert not (tmp_path / "emb").exists()


def test_train_on_a_file_that_is_not_a_manifest(tmp_path):
    (tmp_path / "manifest.csv").write_text("x\n")
    result = _stage(tmp_path, "train.py", "manifest.csv", "m.pt", "train", params={"train": {}})
    _assert_one_line_error(result, "manifest.csv", "lacks columns")


@pytest.mark.parametrize("edit, line", [
    # PyYAML keeps the last of two keys silently; DVC refuses the file, so a stage run alone must too.
    (lambda text: text.replace("  dropout:", "  dropout: 0.9\n  dropout:", 1), "key 'dropout' given twice at line"),
    (lambda text: text + "train: [\n", "found '<stream end>' at line"),
])
def test_a_params_file_that_is_not_clean_yaml_is_one_line(tmp_path, edit, line):
    (tmp_path / "params.yaml").write_text(edit((REPO_ROOT / "params.yaml").read_text()))
    result = subprocess.run([sys.executable, "-m", "stages.train", "m.csv", "m", "out"], cwd=tmp_path,
                            env=os.environ | {"PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: params.yaml: not valid YAML: ") and line in result.stderr, result.stderr


def test_unknown_param_keys_are_reported(tmp_path):
    result = _stage(tmp_path, "resample.py", "raw", "out", params={"resample": {"sample_rat": 8000}})
    _assert_one_line_error(result, "params.yaml", "unknown keys: sample_rat")


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO_ROOT / "stages").glob("[!_]*.py")))
def test_every_stage_explains_itself(tmp_path, script):
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    module = f"stages.{script.removesuffix('.py')}"
    result = subprocess.run([sys.executable, "-m", module, "--help"],
                            cwd=tmp_path, env=os.environ | {"PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True)
    assert result.returncode == 0 and "params.yaml" in result.stdout
    assert result.stdout.startswith(f"usage: python -m {module} "), result.stdout  # the command to type


def test_a_command_line_option_that_is_not_yaml_is_argparses_usage_error(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    result = subprocess.run([sys.executable, "-m", "stages.train", "--folds", "{'1': [1, 2]", "m.csv", "m", "out"],
                            cwd=tmp_path, env=os.environ | {"PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "python -m stages.train: error: argument --folds: invalid YAML value: \"{'1': [1, 2]\"")
    assert "[--folds YAML]" in result.stderr  # the usage says what the option takes


# ----------------------------------------------------------------------------- params checked before any work

TRAIN_ARGS = ("manifest.csv", "m.safetensors", "train")


def _assert_only_line(result, line):
    """Exit 1 and exactly this one line on stderr: no traceback, no usage text."""
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [line], result.stderr


@pytest.mark.parametrize("script, args, section, params, line", [
    # train.py, from params.yaml
    ("train.py", TRAIN_ARGS, "train", {"batch_size": 0}, "train.batch_size=0: must be a positive integer"),
    ("train.py", TRAIN_ARGS, "train", {"dropout": 1.5}, "train.dropout=1.5: must be at least 0 and below 1"),
    ("train.py", TRAIN_ARGS, "train", {"max_epochs": 0}, "train.max_epochs=0: must be a positive integer"),
    ("train.py", TRAIN_ARGS, "train", {"max_epochs": "ten"}, "train.max_epochs='ten': must be an integer"),
    ("train.py", TRAIN_ARGS, "train", {"patience": -3}, "train.patience=-3: must be a positive integer"),
    ("train.py", TRAIN_ARGS, "train", {"hidden_size": 2.5}, "train.hidden_size=2.5: must be an integer"),
    ("train.py", TRAIN_ARGS, "train", {"weight_decay": -0.1}, "train.weight_decay=-0.1: must be a number, 0 or more"),
    ("train.py", TRAIN_ARGS, "train", {"learning_rate": float("nan")},
     "train.learning_rate=nan: must be a positive number"),
    ("train.py", TRAIN_ARGS, "train", {"seed": -1}, "train.seed=-1: must be an integer from 0 to 2**32 - 1"),
    ("train.py", TRAIN_ARGS, "train", {"device": "gpu"},
     "train.device='gpu': must be auto, cpu, cuda or cuda:N (or mps, xpu)"),
    # resample.py
    ("resample.py", ("raw", "out"), "resample", {"method": "linear"},
     "resample.method='linear' is not one of sinc_interp_kaiser, sinc_interp_hann"),
    ("resample.py", ("raw", "out"), "resample", {"subtype": "MP3"},
     "resample.subtype='MP3' is not one of PCM_16, PCM_24, FLOAT"),
    ("resample.py", ("raw", "out"), "resample", {"sample_rate": 0},
     "resample.sample_rate=0: must be a positive number of Hz"),
    ("resample.py", ("raw", "out"), "resample", {"sample_rate": -16000},
     "resample.sample_rate=-16000: must be a positive number of Hz"),
    ("resample.py", ("raw", "out"), "resample", {"lowpass_filter_width": 0},
     "resample.lowpass_filter_width=0: must be a positive integer"),
    ("resample.py", ("raw", "out"), "resample", {"rolloff": 0}, "resample.rolloff=0: must be above 0 and at most 1"),
    ("resample.py", ("raw", "out"), "resample", {"rolloff": 1.5},
     "resample.rolloff=1.5: must be above 0 and at most 1"),
    # embed.py
    ("embed.py", ("16k", "emb"), "embed", {"mode": "turbo"}, "embed.mode='turbo' is not one of exact, fast"),
    ("embed.py", ("16k", "emb"), "embed", {"storage": "int8"},
     "embed.storage='int8' is not one of float32, float16"),
    ("embed.py", ("16k", "emb"), "embed", {"device": "gpu"},
     "embed.device='gpu': must be auto, cpu, cuda or cuda:N (or mps, xpu)"),
    ("embed.py", ("16k", "emb"), "embed", {"layer": "last"}, "embed.layer='last': must be an integer"),
    ("embed.py", ("16k", "emb"), "embed", {"layer_summary": "maybe"},
     "embed.layer_summary='maybe': must be true or false"),
    ("embed.py", ("16k", "emb"), "embed", {"layer": 1.5}, "embed.layer=1.5: must be an integer"),
    ("embed.py", ("16k", "emb"), "embed", {"layer": -2},
     "embed.layer=-2: must be -1 (the last hidden state) or a layer number, 0 or more"),
    # download.py
    ("download.py", ("raw",), "data", {"source": "ftp"}, "data.source='ftp' is not one of synthetic, ravdess, zip"),
    ("download.py", ("raw",), "data", {"md5": "bc696df6"},
     "data.md5='bc696df6': must be 32 hexadecimal digits (quote it in params.yaml: md5: '0123...')"),
    ("download.py", ("raw",), "data", {"synthetic_clip_seconds": 0},
     "data.synthetic_clip_seconds=0: must be a positive number of seconds"),
])
def test_a_bad_param_in_params_yaml_is_one_line_naming_the_key(tmp_path, script, args, section, params, line):
    _assert_only_line(_stage(tmp_path, script, *args, params={section: params}), f"error: {line}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # checked before any work


@pytest.mark.parametrize("script, args, option, line", [
    ("train.py", TRAIN_ARGS, ("--learning-rate", "-1"), "train.learning_rate=-1: must be a positive number"),
    ("train.py", TRAIN_ARGS, ("--batch-size", "0"), "train.batch_size=0: must be a positive integer"),
    ("resample.py", ("raw", "out"), ("--sample-rate", "-8000"),
     "resample.sample_rate=-8000: must be a positive number of Hz"),
    ("embed.py", ("16k", "emb"), ("--mode", "turbo"), "embed.mode='turbo' is not one of exact, fast"),
    # a word that is no bool is refused, not read as false
    ("embed.py", ("16k", "emb"), ("--layer-summary", "maybe"), "embed.layer_summary='maybe': must be true or false"),
])
def test_a_bad_param_on_the_command_line_is_the_same_one_line(tmp_path, script, args, option, line):
    section = {"train.py": "train", "resample.py": "resample", "embed.py": "embed"}[script]
    _assert_only_line(_stage(tmp_path, script, *args, *option, params={section: {}}), f"error: {line}")


def test_an_unquoted_md5_of_digits_reads_as_the_command_line_reads_it(tmp_path):
    (tmp_path / "corpus.zip").write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip archive
    digits = "12345678901234567890123456789012"
    text = (REPO_ROOT / "params.yaml").read_text()
    for key, value in (("source", "zip"), ("zip_path", "corpus.zip"), ("md5", digits)):
        text = re.sub(rf"(?m)^  {key}: \S+", f"  {key}: {value}", text)
    (tmp_path / "params.yaml").write_text(text)
    assert isinstance(yaml.safe_load((tmp_path / "params.yaml").read_text())["data"]["md5"], int)
    result = subprocess.run([sys.executable, "-m", "stages.download", "raw"], cwd=tmp_path,
                            env=os.environ | {"PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: corpus.zip: MD5 is ") and f"expected {digits}" in result.stderr
