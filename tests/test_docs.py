"""The README stays short and every relative link in it and in docs/ leads somewhere."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")), REPO_ROOT / "vendor/vega/README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(markdown: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"(?ms)^```.*?^```", "", markdown.read_text())
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"(?m)^#{1,6} (.+)$", text)}


def test_the_readme_has_at_most_200_lines():
    assert len((REPO_ROOT / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(doc):
    text = re.sub(r"(?ms)^```.*?^```", "", doc.read_text())
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        assert linked.exists(), f"{doc.name}: {target}: no such file"
        if anchor:
            assert linked.suffix == ".md" and anchor in _anchors(linked), f"{doc.name}: {target}: no such heading"


def test_the_readmes_figures_are_the_committed_metrics():
    """The metrics block is `make pipeline`'s report of the committed metrics, and the headline their rounding."""
    readme = (REPO_ROOT / "README.md").read_text()
    report = subprocess.run([sys.executable, "-m", "ravdess_ser.report", "experiments/train/metrics.json",
                             "experiments/crossval/metrics.json"], cwd=REPO_ROOT, capture_output=True, text=True,
                            check=True).stdout
    assert report.strip() in readme
    crossval = json.loads((REPO_ROOT / "experiments/crossval/metrics.json").read_text())
    headline = ", ".join(f"{name} {crossval[key]['mean']:.2f} ± {crossval[key]['std']:.2f}" for name, key in
                         (("cross-validated UA", "unweighted_accuracy"), ("accuracy", "accuracy"),
                          ("macro F1", "macro_f1")))
    assert headline in " ".join(readme.split()), headline


def test_the_readmes_embedding_speeds_are_the_benchmarks_results():
    """Each row of the README's speed table is its section of the benchmark's results file (CPU class, then the
    family and model where the section has them)."""
    results = json.loads((REPO_ROOT / "benchmarks/results/embed_benchmark.json").read_text())
    rows = re.findall(r"(?m)^\| ([A-Z0-9-]+(?:, [^|(]+)?) \([^)]*\) \| ([^|]+) \| ([^|]+)x \| ([^|]+) \| ([^|]+)x \| ([^|]+)x \|$",
                      (REPO_ROOT / "README.md").read_text())
    assert rows, "no speed table in the README"
    for cpu_class, exact, exact_vs_ort, fast, fast_vs_exact, fast_vs_int8 in rows:
        peers = results[cpu_class]["peers"]
        speeds, ratios = peers["audio_seconds_per_second"], peers["ratios"]
        assert (exact, exact_vs_ort, fast, fast_vs_exact, fast_vs_int8) == (
            f"{speeds['exact stage']:.1f}", f"{ratios['exact_vs_onnxruntime_fp32']:.2f}",
            f"{speeds['fast stage']:.1f}", f"{ratios['fast_vs_exact']:.2f}",
            f"{ratios['fast_vs_onnxruntime_int8']:.2f}"), cpu_class


def test_the_modules_scheduled_first_exist():
    """conftest.py's LONGEST_MODULES orders `make test`'s modules by name: a renamed module would silently drop out."""
    from conftest import LONGEST_MODULES

    assert [m for m in LONGEST_MODULES if not (REPO_ROOT / "tests" / f"{m}.py").is_file()] == []
