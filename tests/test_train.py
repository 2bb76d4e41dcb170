from pathlib import Path

import numpy as np
import pytest
import torch

from ravdess_ser.errors import PipelineError
from ravdess_ser.manifest import OK, ManifestRow
from ravdess_ser.ravdess import EMOTIONS, speech_clip_names
from ravdess_ser.train import (PooledMLPClassifier, TrainConfig, load_classifier, pad_batch, save_classifier,
                               split_by_actor, train_classifier)


def _embedded_corpus(root: Path, actors, dim=16, separation=1.5, seed=0) -> list[ManifestRow]:
    """Per-clip (time, dim) arrays whose mean encodes the emotion, plus speaker and frame noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(9, dim)) * separation
    rows = []
    for actor in actors:
        speaker = rng.normal(size=dim) * 0.5
        for clip in speech_clip_names(actor):
            frames = rng.integers(20, 40)
            array = centres[clip.emotion] + speaker + rng.normal(size=(frames, dim))
            path = root / f"Actor_{actor:02d}" / f"{clip.stem}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, array.astype(np.float32))
            rows.append(ManifestRow(clip_id=clip.stem, actor=actor, gender=clip.gender, emotion=clip.emotion,
                                    emotion_name=clip.emotion_name, embedding_path=path.relative_to(root).as_posix(),
                                    num_frames=int(frames), status=OK))
    return rows


FAST = dict(val_actors=(5,), test_actors=(6,), max_epochs=30, patience=5, hidden_size=32, device="cpu")


def test_classifier_learns_speaker_independently_and_reports_every_metric(tmp_path):
    rows = _embedded_corpus(tmp_path, range(1, 7))
    result = train_classifier(rows, tmp_path, TrainConfig(**FAST), progress=False)
    test = result.metrics["test"]
    assert test["accuracy"] > 0.8 and test["unweighted_accuracy"] > 0.8 and test["macro_f1"] > 0.8
    assert set(test["recall"]) == set(EMOTIONS.values())
    assert result.metrics["splits"] == {"train_actors": [1, 2, 3, 4], "val_actors": [5], "test_actors": [6]}
    assert len(result.test_predictions) == 60 and {p["actor"] for p in result.test_predictions} == {6}
    assert [h["epoch"] for h in result.history] == list(range(1, len(result.history) + 1))


def test_training_is_deterministic(tmp_path):
    rows = _embedded_corpus(tmp_path, range(1, 7), separation=0.4)
    config = TrainConfig(**FAST | {"pooling": "attentive", "max_epochs": 8})
    first = train_classifier(rows, tmp_path, config, progress=False)
    second = train_classifier(rows, tmp_path, config, progress=False)
    assert first.metrics == second.metrics and first.history == second.history
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key])
    other_seed = train_classifier(rows, tmp_path, TrainConfig(**FAST | {"pooling": "attentive", "max_epochs": 8, "seed": 1}), progress=False)
    assert other_seed.history != first.history


@pytest.mark.parametrize("pooling", ["mean", "mean_std", "attentive"])
def test_padding_never_changes_a_clip_prediction(pooling):
    torch.manual_seed(0)
    model = PooledMLPClassifier(dim=8, num_classes=8, pooling=pooling, hidden_size=16, dropout=0.0).eval()
    short, long = torch.randn(5, 8), torch.randn(12, 8)
    alone = model(*pad_batch([(short, torch.tensor(0))])[:2])
    batched = model(*pad_batch([(short, torch.tensor(0)), (long, torch.tensor(1))])[:2])
    torch.testing.assert_close(alone[0], batched[0])


def test_an_actor_in_two_splits_is_rejected():
    with pytest.raises(PipelineError, match=r"actor\(s\) \[5\] are listed in both"):
        split_by_actor([], val_actors=(5,), test_actors=(5, 6))


def test_a_split_without_clips_is_rejected(tmp_path):
    rows = _embedded_corpus(tmp_path, range(1, 4))
    with pytest.raises(PipelineError, match=r"names actor\(s\) \[9\] that have no usable clips"):
        split_by_actor(rows, val_actors=(2,), test_actors=(9,))
    with pytest.raises(PipelineError, match="training split has no clips"):
        split_by_actor(rows, val_actors=(1, 2), test_actors=(3,))


def test_an_emotion_missing_from_training_is_rejected(tmp_path):
    rows = [row for row in _embedded_corpus(tmp_path, range(1, 4)) if not (row.actor == 1 and row.emotion == 8)]
    with pytest.raises(PipelineError, match="emotion\\(s\\) surprised have no clips in the training split"):
        split_by_actor(rows, val_actors=(2,), test_actors=(3,))


def test_embeddings_of_mismatched_dimension_are_rejected_naming_the_file(tmp_path):
    rows = _embedded_corpus(tmp_path, range(1, 4))
    odd = tmp_path / rows[5].embedding_path
    np.save(odd, np.zeros((10, 7), dtype=np.float32))
    with pytest.raises(PipelineError, match="has 7 features but") as caught:
        train_classifier(rows, tmp_path, TrainConfig(**FAST | {"val_actors": (2,), "test_actors": (3,)}), progress=False)
    assert str(odd) in str(caught.value)


def test_saved_classifier_is_byte_deterministic_and_loads_back(tmp_path):
    rows = _embedded_corpus(tmp_path, range(1, 7))
    result = train_classifier(rows, tmp_path, TrainConfig(**FAST | {"max_epochs": 3}), progress=False)
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_classifier(first, result.model, TrainConfig(**FAST))
    save_classifier(second, result.model, TrainConfig(**FAST))
    assert first.read_bytes() == second.read_bytes()
    model, config = load_classifier(first)
    assert config == TrainConfig(**FAST)
    features = torch.randn(2, 30, 16)
    mask = torch.ones(2, 30, dtype=torch.bool)
    torch.testing.assert_close(model(features, mask), result.model.eval()(features, mask))
