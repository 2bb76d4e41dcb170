"""Reading the HTML pages `dvc plots show` writes: what they would fetch, their plots, and rendering those in Node."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

from conftest import REPO_ROOT

VENDOR = REPO_ROOT / "vendor" / "vega"
RENDER_SCRIPT = Path(__file__).with_name("render_vega.js")
# dvc_render.vega.VegaRenderer.DIV: one of these per plot.
_PLOT = re.compile(r'<div id = "([^"]*)">\s*<script type = "text/javascript">\s*var spec = (.*?);\s*'
                   r"vegaEmbed\('#([^']*)', spec\);\s*</script>\s*</div>", re.DOTALL)


class _Resources(HTMLParser):
    """Every address the page itself would load or link to: src, href, and CSS url(...) / @import."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts_with_src = 0

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in {"src", "href", "srcset", "data", "action", "poster"} and value:
                self.urls.append(value)
            if name == "style" and value:
                self.urls += _css_urls(value)
        if tag == "script" and dict(attrs).get("src"):
            self.scripts_with_src += 1

    def handle_data(self, data):
        if self.lasttag == "style":
            self.urls += _css_urls(data)


def _css_urls(css: str) -> list[str]:
    return re.findall(r"url\(\s*['\"]?([^'\")]+)", css) + re.findall(r"@import\s+['\"]([^'\"]+)", css)


def remote_resources(page: str) -> list[str]:
    """Addresses in the page's tags and styles that need a network (http, https, protocol-relative)."""
    parser = _Resources()
    parser.feed(page)
    return [url for url in parser.urls if re.match(r"(?i)\s*(https?:)?//", url)]


def external_scripts(page: str) -> int:
    parser = _Resources()
    parser.feed(page)
    return parser.scripts_with_src


def plot_specs(page: str) -> dict[str, dict]:
    """Each plot's Vega-Lite spec, by its div id; a plot whose id or spec would break the page's script fails."""
    plots = {}
    for div_id, spec, embedded_id in _PLOT.findall(page):
        assert div_id == embedded_id, f"plot {div_id!r} embeds into {embedded_id!r}"
        plots[div_id] = json.loads(spec)
    assert page.count("vegaEmbed('#") == len(plots), "a plot's script is not of the form DVC writes, or is broken"
    return plots


def render_svgs(specs: list[dict]) -> list[dict]:
    """Each spec drawn to SVG by the vendored vega in Node: {"svg", "warnings"} or {"error", "warnings"}."""
    node = shutil.which("node")
    assert node, "node is needed to render the plots"
    result = subprocess.run([node, str(RENDER_SCRIPT), str(VENDOR)], input=json.dumps(specs), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
