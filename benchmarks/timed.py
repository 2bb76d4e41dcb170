"""Run a command and record how long it took, and on what machine, in benchmarks/results/timings.json.

``python benchmarks/timed.py NAME -- COMMAND...`` runs COMMAND, then sets ``NAME`` in that file to its wall time,
exit code, commit, date, machine (CPU model, cores, the CPU class its kernels see) and the load average before it,
keeping the other names, and exits with COMMAND's exit code. It prints nothing, so that COMMAND's last line
(pytest's summary) stays the last line. The Makefile times ``make pipeline``'s ``dvc repro``, ``make test`` and
``make test-fast`` this way; the durations the README and docs/ quote come from this file, with its machine.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from ravdess_ser.cpu import cpu_class, cpu_flags, cpu_signature

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "timings.json"


def machine() -> dict:
    cpu, _ = cpu_flags()
    return {"cpu": cpu or platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "cpu_signature": cpu_signature(), "cpu_class": cpu_class(), "python": platform.python_version()}


def _commit() -> str | None:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return (result.stdout.strip() + ("+changes" if dirty else "")) if result.returncode == 0 else None


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") != 1 or len(argv) < 3:
        print("usage: python benchmarks/timed.py NAME -- COMMAND...", file=sys.stderr)
        return 2
    name, command = argv[0], argv[2:]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # the machine may be shared: was it busy?
    start = time.monotonic()
    try:
        returncode = subprocess.call(command)
    except KeyboardInterrupt:
        returncode = 130
    seconds = round(time.monotonic() - start, 1)
    record = {"seconds": seconds, "exit_code": returncode, "command": command, "commit": _commit(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "load_average_before": load}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    try:
        timings = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        timings = {}
    timings[name] = record
    RESULTS.write_text(json.dumps(timings, indent=2) + "\n")
    return returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
