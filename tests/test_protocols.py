"""Published protocols by name: their folds, splits, classes and seeds, and that no test actor leaks."""

from dataclasses import replace

import numpy as np
import pytest

from ravdess_ser.crossval import cross_validate, write_crossval_report
from ravdess_ser.errors import PipelineError
from ravdess_ser.manifest import OK, ManifestRow
from ravdess_ser.protocols import EMOBOX_FOLDS, class_of, emotion_classes
from ravdess_ser.ravdess import ALL_ACTORS, EMOTION_NAMES, speech_clip_names
from ravdess_ser.train import speaker_statistics, split_rows
from ravdess_ser.train_config import TrainConfig
from test_train import FAST

EMOBOX_TEST_SETS = [{1, 11, 20, 21}, {4, 10, 12, 14}, {8, 9, 19, 23}, {3, 5, 7, 24}, {2, 15, 16, 18}, {6, 13, 17, 22}]


def _song_rows(actor: int) -> list[ManifestRow]:
    """RAVDESS song clips of an actor: vocal channel 2, emotions 1-6 (neutral has no strong intensity)."""
    rows = []
    for emotion in range(1, 7):
        for intensity in (1,) if emotion == 1 else (1, 2):
            for statement in (1, 2):
                for repetition in (1, 2):
                    rows.append(ManifestRow(clip_id=f"03-02-{emotion:02d}-{intensity:02d}-{statement:02d}-"
                                                    f"{repetition:02d}-{actor:02d}",
                                            actor=actor, emotion=emotion, vocal_channel=2, status=OK))
    return rows


def _manifest(actors=ALL_ACTORS, song=False) -> list[ManifestRow]:
    rows = [ManifestRow(clip_id=clip.stem, actor=actor, emotion=clip.emotion, vocal_channel=1, status=OK)
            for actor in actors for clip in speech_clip_names(actor)]
    return rows + [row for actor in actors if song and actor != 18 for row in _song_rows(actor)]


def _actors(rows) -> set[int]:
    return {row.actor for row in rows}


def _check_leak_free(splits, fold):
    ids = {name: {row.clip_id for row in getattr(splits, name)} for name in ("train", "val", "test")}
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    assert _actors(splits.test) == set(fold.test_actors)
    assert not _actors(splits.test) & (_actors(splits.train) | _actors(splits.val))


@pytest.mark.parametrize("validation", ["auto", "speakers", "utterances"])
def test_emobox_runs_its_six_released_folds_without_a_leak(validation):
    protocol = TrainConfig(protocol="emobox", validation=validation).resolved_protocol
    assert [set(fold.test_actors) for fold in protocol.folds] == EMOBOX_TEST_SETS
    assert [fold.name for fold in protocol.folds] == list(EMOBOX_FOLDS) == ["1", "2", "3", "4", "5", "6"]
    assert sorted(a for fold in protocol.folds for a in fold.test_actors) == list(ALL_ACTORS)  # each tested once
    assert protocol.classes == EMOTION_NAMES and protocol.seeds == (0,) and protocol.subsets == ("speech",)
    assert protocol.validation == ("utterances" if validation == "auto" else validation)
    rows = _manifest(song=True)  # song clips in the manifest are not EmoBox's: left out
    for index, fold in enumerate(protocol.folds):
        splits = split_rows(rows, protocol, fold, seed=0)
        _check_leak_free(splits, fold)
        assert {row.vocal_channel for split in (splits.train, splits.val, splits.test) for row in split} == {1}
        assert len(splits.test) == 4 * 60
        if protocol.validation == "utterances":
            assert _actors(splits.val) <= _actors(splits.train)  # EmoBox: 20% of the training fold's utterances
            for emotion in range(1, 9):
                held = sum(row.emotion == emotion for row in splits.val)
                total = sum(row.emotion == emotion for row in splits.val + splits.train)
                assert held == round(0.2 * total)
        else:
            assert _actors(splits.val) == set(protocol.folds[(index + 1) % 6].test_actors)


def test_the_utterance_split_follows_the_seed_and_only_the_seed():
    protocol = TrainConfig(protocol="emobox").resolved_protocol
    rows = _manifest()
    first = {row.clip_id for row in split_rows(rows, protocol, protocol.folds[0], seed=0).val}
    assert first == {row.clip_id for row in split_rows(list(reversed(rows)), protocol, protocol.folds[0], seed=0).val}
    assert first != {row.clip_id for row in split_rows(rows, protocol, protocol.folds[0], seed=1).val}


def test_pepino2021_is_one_split_of_speech_and_song_with_seven_classes_and_five_seeds():
    protocol = TrainConfig(protocol="pepino2021").resolved_protocol
    assert protocol.seeds == (0, 1, 2, 3, 4) and protocol.subsets == ("speech", "song")
    assert protocol.classes == ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    assert class_of(2, protocol.classes) == class_of(1, protocol.classes) == 0  # calm is neutral
    (fold,) = protocol.folds
    splits = split_rows(_manifest(song=True), protocol, fold, seed=0)
    _check_leak_free(splits, fold)
    assert _actors(splits.train) == set(range(1, 21)) and _actors(splits.val) == {21, 22}
    assert _actors(splits.test) == {23, 24}
    assert len(splits.test) == 2 * (60 + 44) and {row.vocal_channel for row in splits.test} == {1, 2}


def test_pepino2021_without_song_clips_says_which_param_to_set():
    protocol = TrainConfig(protocol="pepino2021").resolved_protocol
    with pytest.raises(PipelineError, match=r"no usable song clips; set data.subsets to \[speech, song\]"):
        split_rows(_manifest(), protocol, protocol.folds[0], seed=0)


@pytest.mark.slow
def test_pepino2021_reports_mean_and_std_over_its_five_seeds(tmp_path):
    from test_train import _embedded_corpus

    rows = _embedded_corpus(tmp_path, ALL_ACTORS, dim=8)
    for actor in ALL_ACTORS:  # song clips with the speech clips' features of the same emotion
        if actor != 18:
            speech = {row.emotion: row for row in rows if row.actor == actor}
            rows += [replace(row, embedding_path=speech[row.emotion].embedding_path,
                             num_frames=speech[row.emotion].num_frames) for row in _song_rows(actor)]
    config = TrainConfig(**FAST | {"protocol": "pepino2021", "folds": {}, "fold": "1", "max_epochs": 5})
    results = cross_validate(rows, tmp_path, config, processes=2)
    report = write_crossval_report(results, config.resolved_protocol, tmp_path / "out")
    assert [(r.fold, r.seed) for r in results] == [("1", seed) for seed in range(5)]
    assert report["runs"] == 5 and report["folds"] == 1
    assert report["per_fold"] == [report["per_fold"][0]] and report["per_fold"][0]["test_actors"] == [23, 24]
    values = [r.metrics["test"]["unweighted_accuracy"] for r in results]
    assert report["unweighted_accuracy"] == {"mean": round(np.mean(values), 4), "std": round(np.std(values, ddof=1), 4)}
    assert len(set(values)) > 1  # the seeds differ
    assert report["confusion_matrix"]["labels"] == list(emotion_classes("7"))
    assert report["protocol"] | {"overrides": ""} == {
        "name": "pepino2021", "classes": 7, "seeds": 5, "validation": "speakers", "normalisation": "global",
        "transductive": False, "subsets": "speech+song", "overrides": ""}


def test_overrides_of_a_protocol_are_named_in_its_report():
    protocol = TrainConfig(protocol="pepino2021", classes=8, seeds=2, normalisation="speaker").resolved_protocol
    assert protocol.describe()["overrides"] == "classes=8, seeds=2"
    assert protocol.describe()["transductive"] is True and protocol.seeds == (0, 1)


@pytest.mark.parametrize("settings, message", [
    ({"protocol": "emobox", "folds": {"a": [1], "b": [2]}}, "train.protocol=emobox has folds of its own"),
    ({"protocol": "custom"}, "train.protocol=custom needs train.folds"),
    ({"protocol": "iemocap"}, "train.protocol='iemocap' is not one of four-fold, emobox, pepino2021, custom"),
    ({"classes": 6}, r"train.classes='6' is not one of auto, 8, 7"),
    ({"seeds": 0}, r"train.seeds='0': must be auto \(the protocol's\) or a positive integer"),
    ({"validation": "random"}, "train.validation='random' is not one of auto, speakers, utterances"),
    ({"normalisation": "utterance"}, "train.normalisation='utterance' is not one of global, speaker"),
])
def test_bad_protocol_params_are_one_line_errors(settings, message):
    with pytest.raises(PipelineError, match=message):
        TrainConfig(**settings)


def test_the_train_fold_must_be_one_of_the_protocols():
    protocol = TrainConfig(protocol="pepino2021").resolved_protocol
    with pytest.raises(PipelineError, match=r"train.fold='2' is not a fold of train.protocol=pepino2021 \(1\)"):
        protocol.fold("2")


def test_speaker_statistics_from_layer_summaries_are_those_of_the_frames():
    rng = np.random.default_rng(0)
    clips = [rng.normal(loc=rng.normal(), size=(int(rng.integers(5, 40)), 6)) for _ in range(5)]
    rows = [ManifestRow(clip_id=str(i), actor=3, num_frames=len(frames)) for i, frames in enumerate(clips)]
    from_frames = speaker_statistics(rows, clips, "sequence")[3]
    summaries = [np.stack([frames.mean(axis=0), frames.std(axis=0)])[None] for frames in clips]  # (1 layer, 2, dim)
    from_summaries = speaker_statistics(rows, summaries, "layer_summary")[3]
    np.testing.assert_allclose(from_summaries[0][0], from_frames[0], rtol=1e-10)
    np.testing.assert_allclose(from_summaries[1][0], from_frames[1], rtol=1e-10)
