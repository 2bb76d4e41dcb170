"""Training one run of a protocol: its splits, its clips' features, and a seeded, early-stopped classifier.

A run is one fold of the protocol (:mod:`ravdess_ser.protocols`) with one
seed. Its test actors never train or validate. It validates on the fold's
validation actors (``validation=speakers``) or on a random, per-class 20% of
the training actors' clips (``validation=utterances``, as EmoBox does), and
stops early on validation unweighted accuracy.

The classifier (:mod:`ravdess_ser.classifier`) reads one of two feature
kinds. ``sequence``: each clip's ``(time, features)`` frames from the embedded
layer, pooled over time. ``layer_summary``: each clip's per-layer mean and
standard deviation over time (written by embed with ``layer_summary``). With
``normalisation=speaker`` the frames are first normalised with their actor's
own mean and standard deviation over all of that actor's clips (Pepino et
al.'s speaker normalisation; for layer summaries, the same statistics derived
from the summaries and frame counts). Training is seeded and deterministic.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler, TensorDataset

from ravdess_ser.atomic import atomic_dir, write_csv_atomic
from ravdess_ser.classifier import LayerSummaryClassifier, build_classifier, save_classifier
from ravdess_ser.device import resolve_device
from ravdess_ser.embedding_files import layer_summary_path
from ravdess_ser.errors import PipelineError
from ravdess_ser.manifest import OK, ManifestRow
from ravdess_ser.metrics import classification_metrics
from ravdess_ser.protocols import Fold, Protocol, class_of, vocal_channel_codes
from ravdess_ser.ravdess import VOCAL_CHANNELS
from ravdess_ser.train_config import TrainConfig

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
VALIDATION_FRACTION = 0.2  # EmoBox's 80/20 split of the training fold's utterances


@dataclass
class Splits:
    train: list[ManifestRow]
    val: list[ManifestRow]
    test: list[ManifestRow]

    def actors(self, name: str) -> list[int]:
        return sorted({row.actor for row in getattr(self, name)})


def protocol_rows(rows: Sequence[ManifestRow], protocol: Protocol) -> list[ManifestRow]:
    """The manifest's usable clips of the protocol's vocal channels; refuses a protocol whose channel is missing."""
    usable = [row for row in rows if row.status == OK]
    if protocol.subsets is None:
        return usable
    kept = [row for row in usable if row.vocal_channel in vocal_channel_codes(protocol.subsets)]
    present = {VOCAL_CHANNELS.get(row.vocal_channel) for row in kept}
    for subset in protocol.subsets:
        if subset not in present:
            raise PipelineError(f"train.protocol={protocol.name} uses {' and '.join(protocol.subsets)} clips, but the "
                                f"manifest has no usable {subset} clips; set data.subsets to "
                                f"[{', '.join(protocol.subsets)}] (dvc exp run -S 'data.subsets=[{','.join(protocol.subsets)}]')")
    return kept


def _utterance_validation(candidates: Sequence[ManifestRow], classes: Sequence[str], seed: int) -> set[str]:
    """A seeded random ``VALIDATION_FRACTION`` of each class's clips, by clip id (integer draws: any CPU, same ids)."""
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for index in range(len(classes)):
        ids = sorted(row.clip_id for row in candidates if class_of(row.emotion, classes) == index)
        take = round(VALIDATION_FRACTION * len(ids))
        chosen.update(ids[i] for i in rng.permutation(len(ids))[:take])
    return chosen


def split_rows(rows: Sequence[ManifestRow], protocol: Protocol, fold: Fold, seed: int) -> Splits:
    """The run's splits of the protocol's clips: the fold's actors test; validation as the protocol says."""
    usable = protocol_rows(rows, protocol)
    test_actors = set(fold.test_actors)
    test = [row for row in usable if row.actor in test_actors]
    rest = [row for row in usable if row.actor not in test_actors]
    if protocol.validation == "speakers":
        overlap = set(fold.val_actors) & test_actors
        if overlap:
            raise PipelineError(f"fold '{fold.name}': actor(s) {sorted(overlap)} would both validate and test")
        val = [row for row in rest if row.actor in set(fold.val_actors)]
    else:
        held_out = _utterance_validation(rest, protocol.classes, seed)
        val = [row for row in rest if row.clip_id in held_out]
    val_ids = {row.clip_id for row in val}
    splits = Splits(train=[row for row in rest if row.clip_id not in val_ids], val=val, test=test)
    known = {row.actor for row in usable}
    missing = sorted(test_actors - known)
    if missing:
        raise PipelineError(f"fold '{fold.name}' tests on actor(s) {missing}, which have no usable clips in the "
                            "manifest (check the protocol's folds against data.actors)")
    if protocol.validation == "speakers" and sorted(set(fold.val_actors) - known):
        raise PipelineError(f"fold '{fold.name}' validates on actor(s) {sorted(set(fold.val_actors) - known)}, which "
                            "have no usable clips in the manifest (check the protocol's folds against data.actors)")
    for name in SPLITS:
        if not getattr(splits, name):
            raise PipelineError(f"fold '{fold.name}': the {name} split has no clips")
    missing_classes = sorted(set(range(len(protocol.classes))) - {class_of(r.emotion, protocol.classes) for r in splits.train})
    if missing_classes:
        names = ", ".join(protocol.classes[index] for index in missing_classes)
        raise PipelineError(f"emotion(s) {names} have no clips in the training split; the classifier could never "
                            "predict them")
    return splits


def _load_features(row: ManifestRow, root: Path, kind: str, loaded: dict[Path, np.ndarray] | None) -> tuple[Path, np.ndarray]:
    path = Path(root) / row.embedding_path
    if kind == "layer_summary":
        path = layer_summary_path(path)
        if not path.is_file():
            raise PipelineError("no layer summary for this clip; train.features=layer_summary reads the "
                                "summaries that embed writes with embed.layer_summary: true", path)
    try:
        array = np.load(path) if loaded is None or path not in loaded else loaded[path]
    except (OSError, ValueError) as error:
        raise PipelineError(f"cannot read embedding ({error})", path) from None
    if loaded is not None:
        loaded[path] = array
    if kind == "sequence" and (array.ndim != 2 or array.shape[0] == 0):
        raise PipelineError(f"expected a (time, features) array, got shape {array.shape}", path)
    if kind == "layer_summary" and (array.ndim != 3 or array.shape[1] != 2):
        raise PipelineError(f"expected a (layers, 2, features) layer summary, got shape {array.shape}", path)
    return path, array


def speaker_statistics(rows: Sequence[ManifestRow], arrays: Sequence[np.ndarray], kind: str) -> dict[int, tuple]:
    """Each actor's frame mean and standard deviation over all of its clips, per feature (and per layer).

    From frames directly; from layer summaries, through each clip's frame count: the pooled mean is the
    frame-weighted mean of the clips' means, the pooled variance that of their ``std² + mean²`` less the
    pooled mean squared.
    """
    by_actor: dict[int, list[int]] = {}
    for index, row in enumerate(rows):
        by_actor.setdefault(row.actor, []).append(index)
    statistics = {}
    for actor, indices in sorted(by_actor.items()):
        if kind == "sequence":
            frames = np.concatenate([arrays[i] for i in indices]).astype(np.float64)
            mean, std = frames.mean(axis=0), frames.std(axis=0)
        else:
            weights = np.array([rows[i].num_frames or 1 for i in indices], dtype=np.float64)[:, None, None]
            summaries = np.stack([arrays[i] for i in indices]).astype(np.float64)
            means, stds = summaries[:, :, 0], summaries[:, :, 1]
            mean = (weights * means).sum(axis=0) / weights.sum()
            second = (weights * (stds**2 + means**2)).sum(axis=0) / weights.sum()
            std = np.sqrt(np.maximum(second - mean**2, 0.0))
        statistics[actor] = (mean, np.maximum(std, 1e-6))
    return statistics


def normalise_by_speaker(array: np.ndarray, kind: str, statistics: tuple) -> np.ndarray:
    """Frames ``(x - mean) / std`` with the actor's statistics; a summary's mean alike and its std ``/ std``."""
    mean, std = statistics
    if kind == "sequence":
        return ((array - mean) / std).astype(np.float32)
    return np.stack([(array[:, 0] - mean) / std, array[:, 1] / std], axis=1).astype(np.float32)


class EmbeddingDataset(Dataset):
    """Clips of one split: ``(features float32, class index)``, all held in memory.

    ``features`` is a clip's ``(time, dim)`` frames, or with ``kind="layer_summary"`` its
    ``(layers, 2, dim)`` per-layer mean and std; ``layer`` keeps one layer, as ``(1, 2, dim)``.
    ``input_shape`` is what every clip shares: ``(dim,)``, or the summaries' shape.
    """

    def __init__(self, rows: Sequence[ManifestRow], arrays: Sequence[np.ndarray], paths: Sequence[Path], kind: str,
                 classes: Sequence[str], layer: int | None = None):
        self.rows = list(rows)
        self.features = []
        shape = None
        for path, array in zip(paths, arrays):
            clip_shape = array.shape[1:] if kind == "sequence" else array.shape
            if shape is None:
                shape, first = clip_shape, path
            elif clip_shape != shape:
                what = f"{clip_shape[-1]} features" if kind == "sequence" else f"shape {clip_shape}"
                theirs = f"{shape[-1]}" if kind == "sequence" else f"{shape}"
                raise PipelineError(
                    f"embedding has {what} but {first} has {theirs}; embeddings from different models or layers "
                    "are mixed (rerun embed for every actor)",
                    path,
                )
            if layer is not None:
                if not 0 <= layer < array.shape[0]:
                    raise PipelineError(f"train.layer={layer} is out of range: the layer summaries hold layers "
                                        f"0..{array.shape[0] - 1}", path)
                array = array[layer : layer + 1]
            self.features.append(torch.from_numpy(array.astype(np.float32, copy=False)))
        self.labels = torch.tensor([class_of(row.emotion, classes) for row in self.rows], dtype=torch.long)
        self.input_shape = (shape[-1],) if kind == "sequence" else (1 if layer is not None else shape[0], *shape[1:])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        return self.features[index], self.labels[index]


def split_datasets(splits: Splits, root: Path, config: TrainConfig, protocol: Protocol,
                   loaded: dict[Path, np.ndarray] | None = None) -> dict[str, EmbeddingDataset]:
    """The splits' datasets; ``loaded``, if given, keeps every array read by path, for runs that read the same
    files again (the cross-validation's and the layer sweep's runs)."""
    rows = {name: getattr(splits, name) for name in SPLITS}
    read = {name: [_load_features(row, root, config.features, loaded) for row in rows[name]] for name in SPLITS}
    arrays = {name: [array for _, array in read[name]] for name in SPLITS}
    if protocol.normalisation == "speaker":
        every_row = [row for name in SPLITS for row in rows[name]]
        statistics = speaker_statistics(every_row, [a for name in SPLITS for a in arrays[name]], config.features)
        arrays = {name: [normalise_by_speaker(array, config.features, statistics[row.actor])
                         for row, array in zip(rows[name], arrays[name])] for name in SPLITS}
    return {name: EmbeddingDataset(rows[name], arrays[name], [path for path, _ in read[name]], config.features,
                                   protocol.classes, config.summary_layer) for name in SPLITS}


def pad_batch(batch):
    """Right-pad variable-length clips; the mask marks real frames."""
    features, labels = zip(*batch)
    lengths = torch.tensor([f.shape[0] for f in features])
    padded = nn.utils.rnn.pad_sequence(list(features), batch_first=True)
    mask = torch.arange(padded.shape[1])[None, :] < lengths[:, None]
    return padded, mask, torch.stack(labels)


def stack_batch(batch):
    """Fixed-shape layer summaries need no padding."""
    features, labels = zip(*batch)
    return torch.stack(features), torch.stack(labels)


def seed_everything(seed: int, device: torch.device) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed)
    if device.type == "cuda":
        # Every op used here is deterministic on the CPU already; the switch would cost two seconds of
        # imports (torch._inductor) in each training process.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def one_cpu_thread(device: torch.device):
    """Train on one CPU thread: the classifier's ops are so small that synchronising threads costs more than it
    gains (4x slower with two threads on a busy 2-core machine), and a single thread's sums are the same on any
    machine, whatever its core count."""
    previous = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@torch.no_grad()
def pool_split(model: nn.Module, loader: DataLoader) -> torch.Tensor:
    """Every clip of a split pooled, in the loader's (unshuffled) order."""
    return torch.cat([model.pool(*inputs) for *inputs, _ in loader])


@torch.no_grad()
def predict(classify, loader: DataLoader, device) -> tuple[np.ndarray, np.ndarray, float]:
    all_labels, all_predictions, total_loss = [], [], 0.0
    for *inputs, labels in loader:
        logits = classify(*(x.to(device) for x in inputs))
        total_loss += nn.functional.cross_entropy(logits, labels.to(device), reduction="sum").item()
        all_predictions.append(logits.argmax(dim=-1).cpu())
        all_labels.append(labels)
    labels = torch.cat(all_labels).numpy()
    return labels, torch.cat(all_predictions).numpy(), total_loss / max(len(labels), 1)


@dataclass
class TrainResult:
    model: nn.Module
    metrics: dict
    history: list[dict]
    test_predictions: list[dict]
    input_shape: tuple[int, ...]
    classes: tuple[str, ...]


def train_classifier(rows: Sequence[ManifestRow], root: Path, config: TrainConfig, progress: bool = True,
                     loaded: dict[Path, np.ndarray] | None = None) -> TrainResult:
    """Train the run of ``config.fold`` and ``config.seed`` and evaluate it on its splits (``loaded``: see
    :func:`split_datasets`)."""
    device = resolve_device(config.device)
    with one_cpu_thread(device):
        return _train(rows, root, config, device, progress, loaded)


def _train(rows: Sequence[ManifestRow], root: Path, config: TrainConfig, device: torch.device,
           progress: bool, loaded: dict[Path, np.ndarray] | None) -> TrainResult:
    from tqdm import tqdm

    generator = seed_everything(config.seed, device)
    protocol = config.resolved_protocol
    fold = protocol.fold(config.fold)
    splits = split_rows(rows, protocol, fold, config.seed)
    datasets = split_datasets(splits, root, config, protocol, loaded)
    shapes = {name: ds.input_shape for name, ds in datasets.items()}
    if len(set(shapes.values())) != 1:
        raise PipelineError(f"embedding shapes differ between splits: {shapes}; rerun embed for every actor")
    collate = pad_batch if config.features == "sequence" else stack_batch
    loaders = {name: DataLoader(ds, batch_size=config.batch_size, collate_fn=collate) for name, ds in datasets.items()}
    model = build_classifier(config, shapes["train"], len(protocol.classes))
    if model.learned_pooling:
        # Pooling is part of what is learned: every step pools its batch's frames.
        model.fit_standardisation(pool_split(model, loaders["train"]))
        train_loader = DataLoader(datasets["train"], batch_size=config.batch_size, shuffle=True, collate_fn=collate,
                                  generator=generator)
        classify = model
    else:
        # A clip's pooled vector is fixed: pool every clip once and train the classifier on the vectors,
        # indexing a whole batch at once.
        pooled = {name: pool_split(model, loader) for name, loader in loaders.items()}
        model.fit_standardisation(pooled["train"])
        vectors = {name: TensorDataset(pooled[name], datasets[name].labels) for name in SPLITS}
        loaders = {name: DataLoader(ds, sampler=BatchSampler(SequentialSampler(ds), config.batch_size, False),
                                    batch_size=None) for name, ds in vectors.items()}
        train_loader = DataLoader(vectors["train"], batch_size=None, generator=generator, sampler=BatchSampler(
            RandomSampler(vectors["train"], generator=generator), config.batch_size, False))
        classify = model.classify
    model.to(device)
    # Fused: one kernel per parameter instead of a Python loop of elementwise ops, a quarter of the training
    # time on the CPU. Same update rule, summed in another order: metrics can move in the third decimal.
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                                  fused=True)

    history, best_score, best_state, best_epoch, since_best = [], -1.0, None, 0, 0
    bar = tqdm(range(1, config.max_epochs + 1), desc=f"train fold {config.fold} seed {config.seed}", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        train_loss, seen = 0.0, 0
        for *inputs, labels in train_loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(classify(*(x.to(device) for x in inputs)), labels.to(device))
            loss.backward()
            optimizer.step()
            train_loss += loss.item() * len(labels)
            seen += len(labels)
        model.eval()
        val_labels, val_predictions, val_loss = predict(classify, loaders["val"], device)
        val = classification_metrics(val_labels, val_predictions, protocol.classes)
        history.append({
            "epoch": epoch,
            "train_loss": round(train_loss / seen, 5),
            "val_loss": round(val_loss, 5),
            "val_accuracy": val["accuracy"],
            "val_unweighted_accuracy": val["unweighted_accuracy"],
        })
        bar.set_postfix(val_ua=val["unweighted_accuracy"], val_loss=round(val_loss, 3))
        if val["unweighted_accuracy"] > best_score:
            best_score, best_epoch, since_best = val["unweighted_accuracy"], epoch, 0
            best_state = {key: value.detach().clone() for key, value in model.state_dict().items()}
        else:
            since_best += 1
            if since_best >= config.patience:
                break
    model.load_state_dict(best_state)
    model.eval()

    metrics = {"best_epoch": best_epoch, "epochs_run": len(history)}
    test_predictions = []
    for name in SPLITS:
        labels, predictions, loss = predict(classify, loaders[name], device)
        metrics[name] = classification_metrics(labels, predictions, protocol.classes) | {"loss": round(loss, 4), "clips": len(labels)}
        if name == "test":
            test_predictions = [
                {"clip_id": row.clip_id, "actor": row.actor, "actual": protocol.classes[y],
                 "predicted": protocol.classes[p]}
                for row, y, p in zip(splits.test, labels, predictions)
            ]
    if isinstance(model, LayerSummaryClassifier) and model.layer_logits is not None:
        metrics["layer_weights"] = {str(layer): round(w, 4) for layer, w in enumerate(model.layer_weights())}
    metrics["splits"] = {"fold": config.fold, "seed": config.seed, "validation": protocol.validation}
    metrics["splits"] |= {f"{name}_actors": splits.actors(name) for name in SPLITS}
    metrics["protocol"] = protocol.describe()
    return TrainResult(model.cpu(), metrics, history, test_predictions, shapes["train"], protocol.classes)


def save_training_outputs(result: TrainResult, config: TrainConfig, model_path: Path, out_dir: Path) -> None:
    """The classifier at ``model_path``; in ``out_dir``, written as one folder, the run's DVCLive log
    (:mod:`ravdess_ser.training_log`: ``metrics.json`` and the per-epoch curves) and ``test_predictions.csv``."""
    from ravdess_ser.training_log import write_training_log

    save_classifier(model_path, result.model, config, result.input_shape, result.classes)
    with atomic_dir(out_dir) as tmp:
        write_training_log(result.history, result.metrics, tmp)
        write_csv_atomic(tmp / "test_predictions.csv", result.test_predictions)
