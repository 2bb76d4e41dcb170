"""The offline plots page and the plot templates, without a DVC project (tests/test_pipeline_dvc.py renders real ones)."""

from __future__ import annotations

import hashlib
import json
import re

import yaml

from conftest import REPO_ROOT
from plot_pages import VENDOR, external_scripts, remote_resources
from ravdess_ser import plots_page
from ravdess_ser.ravdess import EMOTION_NAMES

TEMPLATES = REPO_ROOT / ".dvc" / "plots"
DVC_BUILTIN_TEMPLATES = {"linear", "simple", "scatter", "scatter_jitter", "smooth", "confusion",
                         "confusion_normalized", "bar_horizontal", "bar_horizontal_sorted"}


def test_the_page_is_built_from_the_vendored_scripts():
    assert plots_page.main(["--check"]) == 0
    page = plots_page.PAGE.read_text(encoding="utf-8")
    for name in plots_page.SCRIPTS:
        assert (VENDOR / name).read_text(encoding="utf-8") in page
    assert external_scripts(page) == 0 and remote_resources(page) == []
    # DVC fills these; {scripts}, DVC's CDN tags, must not be there.
    assert "{plot_divs}" in page and "{scripts}" not in page


def test_the_vendored_scripts_are_the_ones_the_readme_names():
    readme = (VENDOR / "README.md").read_text()
    listed = dict(re.findall(r"^\| `([\w.-]+\.js)` \|.*\| `([0-9a-f]{64})` \|", readme, re.MULTILINE))
    assert set(listed) == set(plots_page.SCRIPTS)
    for name, digest in listed.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name


def test_dvc_config_uses_the_page():
    config = (REPO_ROOT / ".dvc" / "config").read_text()
    assert re.search(r"^\s*html_template = plots/page.html$", config, re.MULTILINE)


def _templates_used() -> set[str]:
    pipeline = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    used = set()
    for stage in pipeline["stages"].values():
        for plot in (stage.get("do", stage)).get("plots", []):
            used |= {(props or {}).get("template", "linear") for props in plot.values()}
    for plot in pipeline["plots"]:
        used |= {props.get("template", "linear") for props in plot.values()}
    return used


def test_every_plot_template_exists():
    for name in _templates_used():
        assert name in DVC_BUILTIN_TEMPLATES or (TEMPLATES / f"{name}.json").is_file(), name


def _orders(node):
    """Every explicit order of categories in a template: axis sorts and the emotions imputed to fill empty cells."""
    if isinstance(node, dict):
        for key in ("sort", "keyvals"):
            if isinstance(node.get(key), list) and node[key]:
                yield node[key]
        for value in node.values():
            yield from _orders(value)
    elif isinstance(node, list):
        for value in node:
            yield from _orders(value)


def test_emotion_templates_put_the_emotions_in_ravdess_order():
    for name in ("emotion_confusion", "emotion_confusion_normalized", "emotion_recall_bars"):
        template = json.loads((TEMPLATES / f"{name}.json").read_text())
        orders = list(_orders(template))
        assert orders and all(order == list(EMOTION_NAMES) for order in orders), name
