"""The HTML page of ``dvc plots show`` / ``dvc plots diff``, with vega built in so that it renders offline.

DVC's own page loads vega, vega-lite and vega-embed from a CDN and stays blank without a network. This one
(``.dvc/plots/page.html``, named by ``plots.html_template`` in ``.dvc/config``) carries the three scripts of
``vendor/vega/`` inline, byte for byte, so every page DVC writes from it is one self-contained file that opens
anywhere. ``python -m ravdess_ser.plots_page`` rebuilds it after the vendored scripts change; ``--check`` only
says whether it is current (the test suite checks it too).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "vendor" / "vega"
PAGE = ROOT / ".dvc" / "plots" / "page.html"
# In load order: vega-lite and vega-embed find vega (and vega-lite) as globals.
SCRIPTS = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")
# What DVC replaces in the template (dvc_render.html.HTML.embed). {scripts} is left out on purpose: it holds
# DVC's CDN <script> tags.
PLACEHOLDERS = ("{refresh_tag}", "{plot_divs}")

HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
{refresh_tag}
<title>ravdess-ser plots</title>
<style>
  body { font-family: sans-serif; margin: 1.5em; color: #222; }
  p.note { color: #555; max-width: 60em; }
  body > div { margin: 0 0 2.5em 0; }
</style>
"""

BODY = """</head>
<body>
<h1>ravdess-ser plots</h1>
<p class="note">Drawn by <code>dvc plots show</code> (or <code>dvc plots diff</code>) from the plots declared in
dvc.yaml; the data are the CSV files named there. Vega, Vega-Lite and vega-embed are built into this page
(vendor/vega/), so it needs no network.</p>
{plot_divs}
</body>
</html>
"""


def build_page(vendor: Path = VENDOR) -> str:
    parts = [HEAD]
    for name in SCRIPTS:
        code = (vendor / name).read_text(encoding="utf-8")
        if "</script" in code.lower():
            raise ValueError(f"{vendor / name} contains '</script': it cannot be inlined as it is")
        if any(placeholder in code for placeholder in (*PLACEHOLDERS, "{scripts}")):
            raise ValueError(f"{vendor / name} contains one of DVC's template placeholders")
        parts.append(f"<!-- {name}: vendor/vega/{name}, unchanged; see vendor/vega/README.md -->\n"
                     f"<script>{code}</script>\n")
    parts.append(BODY)
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the page is current")
    args = parser.parse_args(argv)
    page = build_page()
    current = PAGE.is_file() and PAGE.read_text(encoding="utf-8") == page
    if args.check:
        if not current:
            print(f"{PAGE.relative_to(ROOT)} is not built from vendor/vega: run python -m ravdess_ser.plots_page",
                  file=sys.stderr)
        return 0 if current else 1
    if not current:
        PAGE.write_text(page, encoding="utf-8")
    print(f"{PAGE.relative_to(ROOT)}: {'unchanged' if current else 'rebuilt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
