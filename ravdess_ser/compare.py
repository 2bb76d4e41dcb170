"""Experiments side by side in a table that fits the terminal: ``make compare`` (``python -m ravdess_ser.compare``).

``dvc exp show`` prints every metric, param and dependency hash of the project, thousands of columns here. This
prints, for the same experiments, what one compares: the cross-validated unweighted accuracy (UA), accuracy and
macro F1 as mean ± std over the runs, seeds and folds (``experiments/crossval/metrics.json``), and the params
whose values differ between the rows. Nothing is dropped from DVC: ``dvc exp show`` still has every column, ``dvc metrics show`` every
metric. The table is as wide as the terminal (``COLUMNS``), 120 columns when there is none; params that do not fit
as columns are listed as ``key=value`` in one wrapped column. Other arguments go to ``dvc exp show``, e.g.
``-A`` (experiments of every commit) or ``--rev <commit>``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

CROSSVAL = "experiments/crossval/metrics.json"
METRICS = (("unweighted_accuracy", "CV UA"), ("accuracy", "CV accuracy"), ("macro_f1", "CV macro F1"))
GAP = "  "
DEFAULT_WIDTH = 120


@dataclass
class Row:
    label: str
    metrics: dict[str, str]  # header -> "0.522 ± 0.039", or "-"
    params: dict[str, str] | None  # dotted key -> value as text; None when the experiment has none (queued)
    note: str = ""


@dataclass
class Table:
    rows: list[Row]
    changed: list[str] = field(default_factory=list)


def _flatten(value, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict) and value and prefix.count(".") < 2:  # section.key; deeper values as JSON
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))}


def _metric_cells(data: dict | None, precision: int) -> dict[str, str]:
    crossval = ((data or {}).get("metrics") or {}).get(CROSSVAL, {}).get("data") or {}
    cells = {}
    for key, header in METRICS:
        value = crossval.get(key)
        if isinstance(value, dict) and isinstance(value.get("mean"), (int, float)):
            std = value.get("std")  # none for a single run
            spread = f" ± {std:.{precision}f}" if isinstance(std, (int, float)) else ""
            cells[header] = f"{value['mean']:.{precision}f}{spread}"
        else:
            cells[header] = "-"
    return cells


def _params(data: dict | None) -> dict[str, str] | None:
    files = (data or {}).get("params") or {}
    if not files:
        return None
    flat = {}
    for path, content in files.items():
        prefix = "" if path == "params.yaml" else f"{path}:"
        for key, value in _flatten((content or {}).get("data") or {}).items():
            flat[prefix + key] = value
    return flat


def _row(entry: dict, label: str, precision: int, note: str = "") -> Row:
    data = entry.get("data")
    if entry.get("error") and not note:
        note = "failed"
    return Row(label, _metric_cells(data, precision), _params(data), note)


def rows_from_exp_show(entries: list[dict], precision: int = 3) -> Table:
    """The rows of ``dvc exp show --json``: workspace, each baseline commit, and its experiments below it."""
    rows = []
    for entry in entries:
        label = entry.get("name") or ("workspace" if entry.get("rev") == "workspace" else str(entry.get("rev"))[:7])
        rows.append(_row(entry, label, precision))
        experiments = entry.get("experiments") or []
        for index, experiment in enumerate(experiments):
            revs = experiment.get("revs") or [{}]
            head = revs[0]
            branch = "└──" if index == len(experiments) - 1 else "├──"
            name = experiment.get("name") or head.get("name")
            rev = str(head.get("rev", ""))[:7]
            state = (experiment.get("executor") or {}).get("state")
            note = state if state and state != "success" else ""
            rows.append(_row(head, f"{branch} {rev} [{name}]" if name else f"{branch} {rev}", precision, note))
    with_params = [row.params for row in rows if row.params is not None]
    keys = list(dict.fromkeys(key for params in with_params for key in params))
    changed = [key for key in keys if len({params.get(key, "-") for params in with_params}) > 1]
    return Table(rows, changed)


def _line(cells: list[str], widths: list[int], right: list[bool]) -> str:
    parts = [cell.rjust(w) if r else cell.ljust(w) for cell, w, r in zip(cells, widths, right)]
    return GAP.join(parts).rstrip()


def _pack(items: list[str], width: int) -> list[str]:
    """``key=value`` items in lines of at most ``width``; an item longer than that gets lines of its own."""
    lines, current = [], ""
    for item in items:
        if len(item) > width:
            lines += [current] if current else []
            lines += textwrap.wrap(item, width, break_long_words=True, break_on_hyphens=False)
            current = ""
        elif current and len(current) + len(GAP) + len(item) <= width:
            current += GAP + item
        else:
            lines += [current] if current else []
            current = item
    return lines + ([current] if current else [])


def format_table(table: Table, width: int = DEFAULT_WIDTH) -> str:
    headers = ["Experiment"] + [header for _, header in METRICS]
    body = [[row.label + (f" ({row.note})" if row.note else "")] + [row.metrics[h] for h in headers[1:]]
            for row in table.rows]
    widths = [max(len(cells[i]) for cells in [headers, *body]) for i in range(len(headers))]
    right = [False] + [True] * len(METRICS)
    values = [[("-" if row.params is None else row.params.get(key, "-")) for key in table.changed]
              for row in table.rows]
    param_widths = [max(len(key), *(len(v[i]) for v in values)) for i, key in enumerate(table.changed)]
    fixed = sum(widths) + len(GAP) * (len(widths) - 1)
    lines = []
    if fixed + sum(len(GAP) + w for w in param_widths) <= width:
        all_widths = widths + param_widths
        flags = right + [False] * len(param_widths)
        lines.append(_line(headers + table.changed, all_widths, flags))
        lines.append(_line(["─" * w for w in all_widths], all_widths, flags))
        for cells, row_values in zip(body, values):
            lines.append(_line(cells + row_values, all_widths, flags))
    else:
        column = max(width - fixed - len(GAP), 24)
        title = "params that differ"
        lines.append(_line(headers + [title], widths + [column], right + [False]))
        lines.append(_line(["─" * w for w in widths] + ["─" * min(column, max(len(title), 1))],
                           widths + [column], right + [False]))
        for cells, row, row_values in zip(body, table.rows, values):
            items = [] if row.params is None else [f"{k}={v}" for k, v in zip(table.changed, row_values)]
            wrapped = _pack(items, column) or [""]
            lines.append(_line(cells + [wrapped[0]], widths + [column], right + [False]))
            lines.extend(_line([""] * len(cells) + [more], widths + [column], right + [False]) for more in wrapped[1:])
    if not table.changed:
        lines.append("(no param differs between these rows)")
    lines.append(f"mean ± std over the runs (seeds and folds), from {CROSSVAL}; every column: dvc exp show")
    return "\n".join(lines)


def _dvc() -> str:
    beside = Path(sys.executable).parent / "dvc"
    return str(beside) if beside.is_file() else (shutil.which("dvc") or "dvc")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Other arguments are passed to `dvc exp show` (e.g. -A, --rev <commit>, -n <num>, --hide-workspace).")
    parser.add_argument("--width", type=int, default=None,
                        help=f"columns of the table (default: the terminal's, {DEFAULT_WIDTH} without one)")
    parser.add_argument("--precision", type=int, default=3, help="decimals of the metrics (default: 3)")
    args, dvc_args = parser.parse_known_args(argv)
    width = args.width or shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    result = subprocess.run([_dvc(), "exp", "show", "--json", *dvc_args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr or result.stdout)
        return result.returncode
    print(format_table(rows_from_exp_show(json.loads(result.stdout), args.precision), width))
    return 0


if __name__ == "__main__":
    sys.exit(main())
