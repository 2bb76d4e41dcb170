"""``dvc`` itself, with dvc.lock rewritten stage by stage instead of whole: ``python -m ravdess_ser.dvc_cli repro``.

After every stage, ``dvc repro`` re-parses the whole of dvc.lock with ruamel's round-trip YAML (pure Python, about
0.8 s for the default pipeline's 4700 lines on 2 cores) and dumps all of it again (0.5 s): over 50 stages, well over
half a minute of bookkeeping that grows with the square of the number of stages. Here the lock file is parsed once;
each stage's entry keeps the text it was last written as, and only the entries whose data changed are dumped again,
each on its own, then joined. The file written has the bytes DVC's own rewrite gives, and that is checked: a
document whose entries, dumped one by one, do not join into DVC's whole dump (a shape this was not made for) is
always rewritten DVC's way. Whenever the file is not what was last written here (edited, or written by another
process), it is parsed again. Everything else is plain ``dvc``; ``make pipeline`` runs ``repro`` through this.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Any

STAGES = "stages"


# dvc is imported in the functions only: the stage worker imports every module of the package, and needs none of it.
def _dumps(data: Any) -> str:
    from dvc.utils.serialize._yaml import _dump

    stream = io.StringIO()
    _dump(data, stream)
    return stream.getvalue()


class _WrittenLock:
    """What was last written to one lock file: its text, a copy of its data and each stage entry's text."""

    def __init__(self, text: str, data: dict, entry_texts: dict[str, str]):
        self.text, self.data, self.entry_texts = text, data, entry_texts

    @classmethod
    def of(cls, data: dict, text: str) -> _WrittenLock | None:
        """The record of ``data`` written as ``text``; None if its entries dumped alone do not join into ``text``."""
        stages = data.get(STAGES)
        if not isinstance(stages, dict):
            return None
        entry_texts = {name: _entry_text(name, entry) for name, entry in stages.items()}
        written = cls(text, _shallow(data), entry_texts)
        return written if written.join(data) == text else None

    def join(self, data: dict) -> str:
        head = _dumps({key: value for key, value in data.items() if key != STAGES})
        return head + f"{STAGES}:\n" + "".join(self.entry_texts[name] for name in data[STAGES])


def _shallow(data: dict) -> dict:
    """The document with its own top level and stages mapping; DVC replaces a stage's entry, never edits one."""
    return {key: dict(value) if key == STAGES else value for key, value in data.items()}


def _entry_text(name: str, entry: Any) -> str:
    text = _dumps({STAGES: {name: entry}})
    assert text.startswith(f"{STAGES}:\n")
    return text[len(STAGES) + 2:]


_written: dict[str, _WrittenLock] = {}


@contextlib.contextmanager
def modify_lock_yaml(path, fs=None):
    """:func:`dvc.utils.serialize.modify_yaml` for dvc.yaml and dvc.lock, dumping only the changed stage entries."""
    from dvc.utils.serialize import modify_yaml

    key = os.path.abspath(os.fspath(path))
    exists = fs.exists(os.fspath(path)) if fs else os.path.exists(path)
    last = _written.get(key)
    text = None
    if exists and last is not None:
        with (fs.open if fs else open)(path, encoding="utf-8") as fd:
            text = fd.read()
    if last is None or text != last.text:
        _written.pop(key, None)
        with modify_yaml(path, fs=fs) as data:
            yield data
        if os.path.basename(key) == "dvc.lock":
            with (fs.open if fs else open)(path, encoding="utf-8") as fd:
                record = _WrittenLock.of(data, fd.read())
            if record is not None:
                _written[key] = record
        return
    data = _shallow(last.data)
    yield data
    head_changed = {k: v for k, v in data.items() if k != STAGES} != {k: v for k, v in last.data.items() if k != STAGES}
    if head_changed or not isinstance(data.get(STAGES), dict):
        _written.pop(key, None)
        with (fs.open if fs else open)(path, "w+", encoding="utf-8") as fd:
            fd.write(_dumps(data))
        return
    entry_texts = {}
    for name, entry in data[STAGES].items():
        unchanged = name in last.entry_texts and entry is last.data[STAGES][name]
        entry_texts[name] = last.entry_texts[name] if unchanged else _entry_text(name, entry)
    record = _WrittenLock("", _shallow(data), entry_texts)
    record.text = record.join(data)
    with (fs.open if fs else open)(path, "w+", encoding="utf-8") as fd:
        fd.write(record.text)
    _written[key] = record


def main(argv: list[str]) -> int:
    import dvc.dvcfile
    from dvc.cli import main as dvc_main

    dvc.dvcfile.modify_yaml = modify_lock_yaml  # the one name through which DVC rewrites dvc.yaml and dvc.lock
    return dvc_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
