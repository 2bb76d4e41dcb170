"""One exception type for problems with the user's input or environment.

Stage scripts catch :class:`PipelineError` and print its message on one line
(no traceback), so every message must name the file and say what is wrong.
"""

from __future__ import annotations

from pathlib import Path

#: What a stage says when Ctrl-C or SIGTERM stops it, at any point.
INTERRUPTED = "interrupted: no partial output was kept; run `dvc repro` to finish"


class PipelineError(Exception):
    """A problem the user can fix: bad input, a missing file, an unreachable server."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self.reason = message
        super().__init__(f"{path}: {message}" if path is not None else message)
