from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ravdess_ser.classifier import LayerSummaryClassifier, PooledMLPClassifier, load_classifier, save_classifier
from ravdess_ser.embedding_files import layer_summary_path
from ravdess_ser.errors import PipelineError
from ravdess_ser.manifest import OK, ManifestRow
from ravdess_ser.metrics import classification_metrics
from ravdess_ser.protocols import Fold
from ravdess_ser.ravdess import EMOTION_NAMES, EMOTIONS, speech_clip_names
from ravdess_ser.train_config import TrainConfig
from ravdess_ser.train import pad_batch, split_rows, train_classifier

SUMMARY_LAYERS = 4
INFORMATIVE_LAYER = 2


def _embedded_corpus(root: Path, actors, dim=16, separation=1.5, seed=0) -> list[ManifestRow]:
    """Per-clip (time, dim) arrays whose mean encodes the emotion, plus speaker and frame noise.

    Each clip also gets a layer summary, (SUMMARY_LAYERS, 2, dim), in which only layer
    INFORMATIVE_LAYER is the frames' mean and std; the other layers are noise.
    """
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
            summary = rng.normal(size=(SUMMARY_LAYERS, 2, dim))
            summary[INFORMATIVE_LAYER] = array.mean(axis=0), array.std(axis=0)
            layer_summary_path(path).parent.mkdir(exist_ok=True)
            np.save(layer_summary_path(path), summary.astype(np.float32))
            rows.append(ManifestRow(clip_id=clip.stem, actor=actor, gender=clip.gender, emotion=clip.emotion,
                                    emotion_name=clip.emotion_name, vocal_channel=clip.vocal_channel, embedding_path=path.relative_to(root).as_posix(),
                                    num_frames=int(frames), status=OK))
    return rows


# Fold "a" tests on actor 6, validates on the next fold's actor 5 and trains on actors 1-4.
FAST = dict(protocol="custom", folds={"a": (6,), "b": (5,), "c": (1, 2, 3, 4)}, fold="a", max_epochs=30, patience=5, hidden_size=32,
            device="cpu")


def test_classifier_learns_speaker_independently_and_reports_every_metric(tmp_path):
    rows = _embedded_corpus(tmp_path, range(1, 7))
    result = train_classifier(rows, tmp_path, TrainConfig(**FAST), progress=False)
    test = result.metrics["test"]
    assert test["accuracy"] > 0.8 and test["unweighted_accuracy"] > 0.8 and test["macro_f1"] > 0.8
    assert set(test["recall"]) == set(EMOTIONS.values())
    assert result.metrics["splits"] == {"fold": "a", "seed": 0, "validation": "speakers", "train_actors": [1, 2, 3, 4],
                                        "val_actors": [5], "test_actors": [6]}
    assert result.metrics["protocol"]["name"] == "custom" and result.metrics["protocol"]["transductive"] is False
    assert len(result.test_predictions) == 60 and {p["actor"] for p in result.test_predictions} == {6}
    assert [h["epoch"] for h in result.history] == list(range(1, len(result.history) + 1))


def test_training_is_deterministic(tmp_path):
    rows = _embedded_corpus(tmp_path, range(1, 7), separation=0.4)
    for variant in ({"pooling": "attentive"}, {"features": "layer_summary", "layer": "weighted"}):
        config = TrainConfig(**FAST | variant | {"max_epochs": 8})
        first = train_classifier(rows, tmp_path, config, progress=False)
        second = train_classifier(rows, tmp_path, config, progress=False)
        assert first.metrics == second.metrics and first.history == second.history
        for key, value in first.model.state_dict().items():
            assert torch.equal(value, second.model.state_dict()[key])
        save_classifier(tmp_path / "first.safetensors", first.model, config, first.input_shape, first.classes)
        save_classifier(tmp_path / "second.safetensors", second.model, config, second.input_shape, second.classes)
        assert (tmp_path / "first.safetensors").read_bytes() == (tmp_path / "second.safetensors").read_bytes()
        other_seed = train_classifier(rows, tmp_path, replace(config, seed=1), progress=False)
        assert other_seed.history != first.history


@pytest.mark.parametrize("pooling", ["mean", "mean_std", "attentive"])
def test_padding_never_changes_a_clip_prediction(pooling):
    torch.manual_seed(0)
    model = PooledMLPClassifier(dim=8, num_classes=8, pooling=pooling, hidden_size=16, dropout=0.0).eval()
    short, long = torch.randn(5, 8), torch.randn(12, 8)
    alone = model(*pad_batch([(short, torch.tensor(0))])[:2])
    batched = model(*pad_batch([(short, torch.tensor(0)), (long, torch.tensor(1))])[:2])
    torch.testing.assert_close(alone[0], batched[0])


# ----------------------------------------------------------------------------- splits (protocols: test_protocols.py)


def test_params_from_yaml_and_the_command_line_mean_the_same_config():
    from_yaml = TrainConfig(protocol="custom", folds={"1": [1, 2], "2": [3, 4]}, fold=2, layer=3,
                            features="layer_summary", seeds=3, classes=7)
    from_cli = TrainConfig(protocol="custom", folds={"1": (1, 2), "2": (3, 4)}, fold="2", layer="3",
                           features="layer_summary", seeds="3", classes="7")
    assert from_yaml == from_cli and from_yaml.summary_layer == 3


@pytest.mark.parametrize("settings, message", [
    ({"features": "layer_summary", "pooling": "attentive"}, "train.pooling=attentive needs frames"),
    ({"layer": "2"}, "train.layer=2 needs train.features=layer_summary"),
    ({"features": "layer_summary", "layer": "last"}, "train.layer='last' is neither a layer number nor 'weighted'"),
    ({"features": "frames"}, "train.features='frames' is not one of sequence, layer_summary"),
])
def test_settings_that_do_not_fit_together_are_rejected(settings, message):
    with pytest.raises(PipelineError, match=message):
        TrainConfig(**settings)


def test_the_library_converts_and_checks_params_as_the_stages_do():
    from_text = TrainConfig(max_epochs="30", learning_rate="3e-3", dropout=0)
    assert from_text == TrainConfig(max_epochs=30, learning_rate=0.003, dropout=0.0)
    with pytest.raises(PipelineError, match=r"^train.learning_rate=-1: must be a positive number$"):
        TrainConfig(learning_rate=-1)
    with pytest.raises(PipelineError, match=r"^train.patience=0: must be a positive integer$"):
        replace(TrainConfig(), patience=0)


def _custom(folds, **settings):
    return TrainConfig(protocol="custom", folds=folds, **settings).resolved_protocol


def test_an_actor_in_two_splits_is_rejected():
    protocol = _custom({"1": (5,), "2": (6,)})
    with pytest.raises(PipelineError, match=r"actor\(s\) \[5\] would both validate and test"):
        split_rows([], protocol, Fold("x", (5, 6), (5,)), seed=0)


def test_a_split_without_clips_is_rejected(tmp_path):
    rows = _embedded_corpus(tmp_path, range(1, 4))
    with pytest.raises(PipelineError, match=r"tests on actor\(s\) \[9\], which have no usable clips"):
        split_rows(rows, _custom({"a": (9,), "b": (2,)}), Fold("a", (9,), (2,)), seed=0)
    with pytest.raises(PipelineError, match="the train split has no clips"):
        split_rows(rows, _custom({"a": (3,), "b": (1, 2)}), Fold("a", (3,), (1, 2)), seed=0)


def test_an_emotion_missing_from_training_is_rejected(tmp_path):
    rows = [row for row in _embedded_corpus(tmp_path, range(1, 4)) if not (row.actor == 1 and row.emotion == 8)]
    with pytest.raises(PipelineError, match="emotion\\(s\\) surprised have no clips in the training split"):
        split_rows(rows, _custom({"a": (3,), "b": (2,), "c": (1,)}), Fold("a", (3,), (2,)), seed=0)


def test_embeddings_of_mismatched_dimension_are_rejected_naming_the_file(tmp_path):
    rows = _embedded_corpus(tmp_path, range(1, 4))
    odd = tmp_path / rows[5].embedding_path
    np.save(odd, np.zeros((10, 7), dtype=np.float32))
    config = TrainConfig(**FAST | {"folds": {"1": (3,), "2": (2,), "3": (1,)}, "fold": "1"})
    with pytest.raises(PipelineError, match="has 7 features but") as caught:
        train_classifier(rows, tmp_path, config, progress=False)
    assert str(odd) in str(caught.value)


# ----------------------------------------------------------------------------- layers


def test_the_weighted_sum_of_layers_learns_which_layer_carries_the_emotion(tmp_path):
    rows = _embedded_corpus(tmp_path, range(1, 7))
    config = TrainConfig(**FAST | {"features": "layer_summary", "layer": "weighted", "max_epochs": 60,
                                   "patience": 60, "learning_rate": 3e-3})
    weighted = train_classifier(rows, tmp_path, config, progress=False)
    weights = weighted.metrics["layer_weights"]
    assert list(weights) == [str(layer) for layer in range(SUMMARY_LAYERS)]
    assert pytest.approx(sum(weights.values()), abs=1e-3) == 1.0
    assert max(weights, key=weights.get) == str(INFORMATIVE_LAYER)
    assert weighted.metrics["test"]["unweighted_accuracy"] > 0.8

    informative = train_classifier(rows, tmp_path, replace(config, layer=str(INFORMATIVE_LAYER)), progress=False)
    noise = train_classifier(rows, tmp_path, replace(config, layer="0"), progress=False)
    assert informative.metrics["test"]["unweighted_accuracy"] > 0.8
    assert noise.metrics["test"]["unweighted_accuracy"] < 0.4  # chance is 1/8
    assert "layer_weights" not in informative.metrics


def test_the_weighted_sum_of_layer_means_is_the_mean_of_the_weighted_frames():
    # What makes summaries enough for SUPERB's probe: its input is the time mean of a weighted sum of layers.
    torch.manual_seed(0)
    frames = torch.randn(SUMMARY_LAYERS, 30, 8)
    summary = torch.stack([frames.mean(dim=1), frames.std(dim=1, correction=0)], dim=1)
    model = LayerSummaryClassifier(SUMMARY_LAYERS, 8, 8, "mean", weighted=True, hidden_size=16, dropout=0.0).eval()
    with torch.no_grad():
        model.layer_logits.copy_(torch.randn(SUMMARY_LAYERS))
        model.layer_mean.copy_(torch.randn(SUMMARY_LAYERS, 8))
        weights = torch.softmax(model.layer_logits, dim=0)
        standardised_frames = (frames - model.layer_mean[:, None]) / model.layer_std[:, None]
        expected = model.mlp((weights[:, None, None] * standardised_frames).sum(dim=0).mean(dim=0, keepdim=True))
        torch.testing.assert_close(model(summary[None]), expected)


def test_layer_summaries_that_were_never_written_are_a_clear_error(tmp_path):
    rows = _embedded_corpus(tmp_path, range(1, 7))
    missing = layer_summary_path(tmp_path / rows[0].embedding_path)
    missing.unlink()
    with pytest.raises(PipelineError, match="embed.layer_summary: true") as caught:
        train_classifier(rows, tmp_path, TrainConfig(**FAST | {"features": "layer_summary"}), progress=False)
    assert str(missing) in str(caught.value)


def test_a_layer_beyond_the_summaries_is_a_clear_error(tmp_path):
    rows = _embedded_corpus(tmp_path, range(1, 7))
    config = TrainConfig(**FAST | {"features": "layer_summary", "layer": str(SUMMARY_LAYERS)})
    with pytest.raises(PipelineError, match=r"train.layer=4 is out of range: the layer summaries hold layers 0..3"):
        train_classifier(rows, tmp_path, config, progress=False)


# ----------------------------------------------------------------------------- saving, metrics


@pytest.mark.parametrize("variant", [{}, {"features": "layer_summary", "layer": "weighted"},
                                     {"features": "layer_summary", "layer": "1", "pooling": "mean"}])
def test_saved_classifier_is_byte_deterministic_and_loads_back(tmp_path, variant):
    rows = _embedded_corpus(tmp_path, range(1, 7))
    config = TrainConfig(**FAST | variant | {"max_epochs": 3})
    result = train_classifier(rows, tmp_path, config, progress=False)
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_classifier(first, result.model, config, result.input_shape, result.classes)
    save_classifier(second, result.model, config, result.input_shape, result.classes)
    assert first.read_bytes() == second.read_bytes()
    model, loaded_config, classes = load_classifier(first)
    assert loaded_config == config and classes == EMOTION_NAMES
    if config.features == "sequence":
        inputs = (torch.randn(2, 30, 16), torch.ones(2, 30, dtype=torch.bool))
    else:
        inputs = (torch.randn(2, *result.input_shape),)
    torch.testing.assert_close(model(*inputs), result.model.eval()(*inputs))


def test_metrics_agree_with_sklearn():
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, size=300)  # class 7 (surprised) never occurs
    predictions = np.where(rng.random(300) < 0.6, labels, rng.integers(0, 8, size=300))
    predictions[predictions == 3] = 4  # class 3 (sad) is never predicted
    present = sorted(set(labels.tolist()))
    ours = classification_metrics(labels, predictions, EMOTION_NAMES)
    assert ours["accuracy"] == round(accuracy_score(labels, predictions), 4)
    assert ours["unweighted_accuracy"] == round(recall_score(labels, predictions, labels=present, average="macro"), 4)
    assert ours["macro_f1"] == round(f1_score(labels, predictions, labels=present, average="macro", zero_division=0), 4)
    assert ours["recall"]["sad"] == 0.0 and "surprised" not in ours["recall"]


def test_speaker_normalisation_trains_and_is_marked_transductive(tmp_path):
    rows = _embedded_corpus(tmp_path, range(1, 7))
    for variant in ({}, {"features": "layer_summary", "layer": str(INFORMATIVE_LAYER)}):
        config = TrainConfig(**FAST | variant | {"normalisation": "speaker"})
        result = train_classifier(rows, tmp_path, config, progress=False)
        assert result.metrics["protocol"]["transductive"] is True
        assert result.metrics["test"]["unweighted_accuracy"] > 0.8
        assert result.metrics != train_classifier(rows, tmp_path, replace(config, normalisation="global"),
                                                  progress=False).metrics


def test_the_training_log_is_dvclives_files_with_the_same_bytes_every_time(tmp_path):
    import json

    from ravdess_ser.train import save_training_outputs

    rows = _embedded_corpus(tmp_path, range(1, 7))
    config = TrainConfig(**FAST | {"max_epochs": 6})
    result = train_classifier(rows, tmp_path, config, progress=False)
    for name in ("first", "second"):
        save_training_outputs(result, config, tmp_path / name / "model.safetensors", tmp_path / name / "log")
    files = sorted(p.relative_to(tmp_path / "first").as_posix() for p in (tmp_path / "first").rglob("*") if p.is_file())
    assert files == ["log/metrics.json", "log/plots/metrics/train/loss.tsv", "log/plots/metrics/val/accuracy.tsv",
                     "log/plots/metrics/val/loss.tsv", "log/plots/metrics/val/unweighted_accuracy.tsv",
                     "log/test_predictions.csv", "model.safetensors"]
    for file in files:
        assert (tmp_path / "first" / file).read_bytes() == (tmp_path / "second" / file).read_bytes(), file
    log = tmp_path / "first" / "log"
    epochs = len(result.history)
    assert json.loads((log / "metrics.json").read_text()) == json.loads(json.dumps(result.metrics)) | {"step": epochs}
    rows = [line.split("\t") for line in (log / "plots/metrics/val/unweighted_accuracy.tsv").read_text().splitlines()]
    assert rows[0] == ["step", "unweighted_accuracy"]
    assert rows[1:] == [[str(h["epoch"]), str(h["val_unweighted_accuracy"])] for h in result.history]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # the folder was written as one
