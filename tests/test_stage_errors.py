"""Stage scripts on bad input: one line on stderr naming the problem, exit 1, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from conftest import REPO_ROOT, tone, write_wav


def _stage(tmp_path, script, *args, params=None):
    """Run ``python -m stages.<script>`` in ``tmp_path``, with the repo's params.yaml changed by ``params``."""
    full = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for section, values in (params or {}).items():
        full[section] = full.get(section, {}) | values
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(full))
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


def test_download_with_an_unknown_source(tmp_path):
    _assert_one_line_error(_stage(tmp_path, "download.py", "data/raw", params={"data": {"source": "ftp"}}),
                           "data.source='ftp' is not one of synthetic, ravdess, zip")


@pytest.mark.slow
def test_embed_with_a_missing_model_folder(tmp_path):
    write_wav(tmp_path / "16k/Actor_01/03-01-01-01-01-01-01.wav", tone(0.5, 16_000), 16_000)
    result = _stage(tmp_path, "embed.py", "16k/Actor_01", "emb/Actor_01", params={"embed": {"model": "./models/missing"}})
    _assert_one_line_error(result, "models/missing", "model folder does not exist")


def test_train_on_a_file_that_is_not_a_manifest(tmp_path):
    (tmp_path / "manifest.csv").write_text("x\n")
    result = _stage(tmp_path, "train.py", "manifest.csv", "m.pt", "metrics.json", "plots", params={"train": {}})
    _assert_one_line_error(result, "manifest.csv", "lacks columns")


def test_unknown_param_keys_are_reported(tmp_path):
    result = _stage(tmp_path, "resample.py", "raw", "out", params={"resample": {"sample_rat": 8000}})
    _assert_one_line_error(result, "params.yaml", "unknown keys: sample_rat")


@pytest.mark.parametrize("script", ["download.py", "resample.py", "embed.py", "label_manifest.py", "train.py"])
def test_every_stage_explains_itself(tmp_path, script):
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    result = subprocess.run([sys.executable, "-m", f"stages.{script.removesuffix('.py')}", "--help"],
                            cwd=tmp_path, env=os.environ | {"PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True)
    assert result.returncode == 0 and "usage:" in result.stdout and "params.yaml" in result.stdout
