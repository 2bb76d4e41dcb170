"""`make compare`'s table, from `dvc exp show --json` output (tests/test_pipeline_dvc.py runs it on real experiments)."""

from __future__ import annotations

import copy

from ravdess_ser.compare import format_table, rows_from_exp_show

PARAMS = {"data": {"source": "synthetic", "actors": ["01", "02", "03"]},
          "embed": {"model": "models/wav2vec2-tiny-random", "layer": -1},
          "train": {"folds": {"1": [1], "2": [2], "3": [3]}, "fold": "1", "layer": "weighted", "hidden_size": 32,
                    "dropout": 0.3, "learning_rate": 0.001}}


def _data(ua: float, **changes) -> dict:
    params = copy.deepcopy(PARAMS)
    for key, value in changes.items():
        section, name = key.split("__")
        params[section][name] = value
    return {"params": {"params.yaml": {"data": params}},
            "metrics": {"experiments/crossval/metrics.json": {"data": {
                "folds": 3, "accuracy": {"mean": ua + 0.01, "std": 0.02}, "unweighted_accuracy": {"mean": ua, "std": 0.0393},
                "macro_f1": {"mean": ua - 0.01, "std": 0.03}, "pooled": {"accuracy": ua}}},
                "experiments/train/metrics.json": {"data": {"test": {"recall": {"neutral": 0.5}}}}}}


def _experiment(name: str, rev: str, data: dict | None, state: str = "success") -> dict:
    return {"name": name, "executor": {"state": state} if state != "success" else None,
            "revs": [{"rev": rev, "name": name, "data": data, "error": None, "experiments": None}]}


def _exp_show(*experiments) -> list[dict]:
    return [{"rev": "workspace", "name": None, "data": _data(0.5221), "error": None, "experiments": None},
            {"rev": "3ea8f8556c6448626f2d1c4def6bd83170383a98", "name": "main", "data": _data(0.5221), "error": None,
             "experiments": list(experiments)}]


def test_two_experiments_show_the_crossval_figures_and_only_the_params_that_differ():
    table = rows_from_exp_show(_exp_show(
        _experiment("hs48", "98142be77cbc4144aa24f57c6fae6b50696c716a", _data(0.5011, train__hidden_size=48)),
        _experiment("drop5", "22d4bb27a441a2dcf5e1a5240d3666cf8d131877", _data(0.4822, train__dropout=0.5))))
    assert table.changed == ["train.hidden_size", "train.dropout"]
    text = format_table(table, 120)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 120
    assert lines[0].split() == ["Experiment", "CV", "UA", "CV", "accuracy", "CV", "macro", "F1", "train.hidden_size",
                                "train.dropout"]
    assert lines[2].split() == ["workspace", "0.522", "±", "0.039", "0.532", "±", "0.020", "0.512", "±", "0.030", "32",
                                "0.3"]
    assert lines[4].split()[:3] == ["├──", "98142be", "[hs48]"] and lines[4].split()[-2:] == ["48", "0.3"]
    assert lines[5].split()[:3] == ["└──", "22d4bb2", "[drop5]"] and lines[5].split()[-2:] == ["32", "0.5"]
    assert "recall" not in text and "models/wav2vec2" not in text  # the rest stays in dvc exp show


def test_params_too_many_for_columns_wrap_in_one_column_within_the_width():
    changes = dict(train__hidden_size=48, train__learning_rate=0.003, train__layer=6, embed__layer=6,
                   embed__model="facebook/wav2vec2-base", data__source="ravdess",
                   train__folds={"test": [23, 24], "val": [21, 22], "rest": list(range(1, 21))})
    table = rows_from_exp_show(_exp_show(
        _experiment("ravdess-w2v2-base-layer6", "98142be77cbc4144aa24f57c6fae6b50696c716a", _data(0.61, **changes))))
    assert set(table.changed) == {f"{k.replace('__', '.')}" for k in changes}
    text = format_table(table, 120)
    assert max(map(len, text.splitlines())) <= 120
    assert "params that differ" in text.splitlines()[0]
    start = text.splitlines()[0].index("params that differ")
    flat = "".join(line[start:] for line in text.splitlines()[2:])  # the wrapped column, lines joined back
    assert 'train.folds={"test":[23,24],"val":[21,22],"rest":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}' in flat
    assert "embed.model=facebook/wav2vec2-base" in flat and "embed.model=models/wav2vec2-tiny-random" in flat


def test_queued_and_failed_experiments_are_rows_without_figures():
    table = rows_from_exp_show(_exp_show(
        _experiment("waiting", "1111111aaaaaaa", None, state="queued"),
        _experiment("broken", "2222222bbbbbbb", {"params": {"params.yaml": {"data": PARAMS}}}, state="failed")))
    text = format_table(table, 120)
    queued = next(line for line in text.splitlines() if "[waiting]" in line)
    failed = next(line for line in text.splitlines() if "[broken]" in line)
    assert "(queued)" in queued and queued.split()[-3:] == ["-", "-", "-"]
    assert "(failed)" in failed and failed.split()[-3:] == ["-", "-", "-"]
    assert "no param differs" in text
