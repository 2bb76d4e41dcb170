"""Baseline emotion classifier on frozen wav2vec2 embeddings.

Speaker-independent protocol: the actors are split into folds (``folds``,
a param). A run tests on one fold's actors, stops early on the next fold's
and trains on every other actor, so no actor is ever in two splits; running
every fold is speaker-independent k-fold cross-validation.

The classifier reads one of two feature kinds. ``sequence``: each clip's
``(time, features)`` frames from the embedded layer, pooled over time (mean,
mean and standard deviation, or attentive pooling). ``layer_summary``: each
clip's per-layer mean and standard deviation over time (written by embed with
``layer_summary``), from one chosen layer or as a learned softmax-weighted sum
of all layers, as the SUPERB benchmark's probes do. Either way the pooled
vector is standardised with training-split statistics only and classified by a
small MLP. Training is seeded and deterministic, with early stopping on
validation unweighted accuracy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler, TensorDataset

from ravdess_ser.cli import DEVICES_ALLOWED, check_param, convert_params, param, positive, valid_device
from ravdess_ser.crossval import DEFAULT_FOLDS, FOLDS_HELP, checked_folds, fold_actors
from ravdess_ser.atomic import atomic_path, write_csv_atomic, write_text_atomic
from ravdess_ser.device import resolve_device
from ravdess_ser.embed import layer_summary_path
from ravdess_ser.errors import PipelineError
from ravdess_ser.manifest import OK, ManifestRow
from ravdess_ser.metrics import classification_metrics
from ravdess_ser.ravdess import EMOTION_NAMES, EMOTIONS

log = logging.getLogger(__name__)

POOLINGS = ("mean", "mean_std", "attentive")
FEATURES = ("sequence", "layer_summary")
WEIGHTED = "weighted"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TrainConfig:
    folds: dict[str, tuple[int, ...]] = param(DEFAULT_FOLDS, FOLDS_HELP)
    fold: str = param("1", "the fold this run tests on: a name in folds")
    features: str = param("sequence", "sequence: the (time, features) frames of embed.layer; "
                          "layer_summary: every layer's mean and std over time (needs embed.layer_summary: true)")
    layer: str = param(WEIGHTED, "with features=layer_summary: a layer number (0 = the transformer's input), "
                       "or weighted: a learned softmax-weighted sum of all layers")
    pooling: str = param("mean_std", "pooling over time: mean, mean_std or attentive (attentive needs features=sequence)")
    hidden_size: int = param(256, "width of the MLP's hidden layer")
    dropout: float = param(0.3, "dropout before the output layer")
    batch_size: int = param(32, "clips per training batch")
    learning_rate: float = param(1e-3, "AdamW learning rate")
    weight_decay: float = param(1e-4, "AdamW weight decay")
    max_epochs: int = param(100, "upper bound on training epochs")
    patience: int = param(15, "stop after this many epochs without a better validation unweighted accuracy")
    seed: int = param(0, "seed for initialisation and batch order")
    device: str = param("auto", "torch device: auto (CUDA if available, else CPU), cpu, cuda")

    def __post_init__(self):
        # Values arrive from YAML, the command line (strings) or a saved model's JSON: one canonical form.
        convert_params(self, "train")
        for name, ok, allowed in (
            ("hidden_size", self.hidden_size >= 1, "a positive integer"),
            ("dropout", 0 <= self.dropout < 1, "at least 0 and below 1"),
            ("batch_size", self.batch_size >= 1, "a positive integer"),
            ("learning_rate", positive(self.learning_rate), "a positive number"),
            ("weight_decay", positive(self.weight_decay) or self.weight_decay == 0, "a number, 0 or more"),
            ("max_epochs", self.max_epochs >= 1, "a positive integer"),
            ("patience", self.patience >= 1, "a positive integer"),
            ("seed", 0 <= self.seed < 2**32, "an integer from 0 to 2**32 - 1"),
            ("device", valid_device(self.device), DEVICES_ALLOWED),
        ):
            check_param(f"train.{name}", getattr(self, name), ok, allowed)
        object.__setattr__(self, "folds", checked_folds(self.folds))
        object.__setattr__(self, "fold", str(self.fold))
        object.__setattr__(self, "layer", str(self.layer))
        fold_actors(self.folds, self.fold)  # raises for a fold that is not in folds
        for name, value, allowed in (("features", self.features, FEATURES), ("pooling", self.pooling, POOLINGS)):
            if value not in allowed:
                raise PipelineError(f"train.{name}={value!r} is not one of {', '.join(allowed)}")
        if self.layer != WEIGHTED and not self.layer.isdigit():
            raise PipelineError(f"train.layer={self.layer!r} is neither a layer number nor {WEIGHTED!r}")
        if self.features == "sequence" and self.layer != WEIGHTED:
            raise PipelineError(f"train.layer={self.layer} needs train.features=layer_summary; with "
                                "features=sequence the frames come from the layer chosen by embed.layer")
        if self.features == "layer_summary" and self.pooling == "attentive":
            raise PipelineError("train.pooling=attentive needs frames (train.features=sequence); layer summaries "
                                "hold each layer's mean and std over time only: use mean or mean_std")

    @property
    def summary_layer(self) -> int | None:
        """The one layer read from the layer summaries, or None for all of them (weighted) or for frames."""
        return None if self.layer == WEIGHTED else int(self.layer)


@dataclass
class Splits:
    train: list[ManifestRow]
    val: list[ManifestRow]
    test: list[ManifestRow]
    train_actors: tuple[int, ...] = field(default=())


def split_by_actor(rows: Sequence[ManifestRow], val_actors: Sequence[int], test_actors: Sequence[int]) -> Splits:
    """Speaker-independent splits: every usable actor not in val or test trains."""
    overlap = set(val_actors) & set(test_actors)
    if overlap:
        raise PipelineError(f"actor(s) {sorted(overlap)} are listed in both the validation and the test split")
    usable = [row for row in rows if row.status == OK]
    known = {row.actor for row in usable}
    splits = Splits(
        train=[row for row in usable if row.actor not in set(val_actors) | set(test_actors)],
        val=[row for row in usable if row.actor in set(val_actors)],
        test=[row for row in usable if row.actor in set(test_actors)],
    )
    splits.train_actors = tuple(sorted({row.actor for row in splits.train}))
    for name, actors, split in (("val", val_actors, splits.val), ("test", test_actors, splits.test)):
        missing = sorted(set(actors) - known)
        if missing:
            raise PipelineError(f"the {name} split names actor(s) {missing} that have no usable clips in the manifest "
                                "(check train.folds against data.actors)")
        if not split:
            raise PipelineError(f"the {name} split has no clips (actors {list(actors)})")
    if not splits.train:
        raise PipelineError("the training split has no clips: every actor is in val or test")
    missing_emotions = sorted(set(EMOTIONS) - {row.emotion for row in splits.train})
    if missing_emotions:
        names = ", ".join(EMOTIONS[code] for code in missing_emotions)
        raise PipelineError(f"emotion(s) {names} have no clips in the training split; the classifier could never predict them")
    return splits


class EmbeddingDataset(Dataset):
    """Clips of one split: ``(features float32, label 0..7)``, all held in memory.

    ``features`` is a clip's ``(time, dim)`` frames, or with ``kind="layer_summary"`` its
    ``(layers, 2, dim)`` per-layer mean and std; ``layer`` keeps one layer, as ``(1, 2, dim)``.
    ``input_shape`` is what every clip shares: ``(dim,)``, or the summaries' shape. ``loaded``, if
    given, keeps every array read by path, for runs that read the same files again (the layer sweep).
    """

    def __init__(self, rows: Sequence[ManifestRow], root: Path, kind: str = "sequence", layer: int | None = None,
                 loaded: dict[Path, np.ndarray] | None = None):
        self.rows = list(rows)
        self.features = []
        shape = None
        for row in self.rows:
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
        self.labels = torch.tensor([row.emotion - 1 for row in self.rows], dtype=torch.long)
        self.input_shape = (shape[-1],) if kind == "sequence" else (1 if layer is not None else shape[0], *shape[1:])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        return self.features[index], self.labels[index]


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


def masked_mean_std(features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    weights = mask.unsqueeze(-1).to(features.dtype)
    count = weights.sum(dim=1).clamp(min=1.0)
    mean = (features * weights).sum(dim=1) / count
    var = (((features - mean.unsqueeze(1)) ** 2) * weights).sum(dim=1) / count
    return mean, var.clamp(min=1e-8).sqrt()


class AttentivePooling(nn.Module):
    """Attentive statistics pooling: a learned frame weighting, then weighted mean and std."""

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(features).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1).unsqueeze(-1)
        mean = (features * weights).sum(dim=1)
        var = ((features - mean.unsqueeze(1)) ** 2 * weights).sum(dim=1)
        return torch.cat([mean, var.clamp(min=1e-8).sqrt()], dim=-1)


def mlp_head(input_dim: int, num_classes: int, hidden_size: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(input_dim, hidden_size), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_size, num_classes)
    )


class PooledMLPClassifier(nn.Module):
    """Frames: pool over time, standardise, then Linear-ReLU-Dropout-Linear.

    ``forward`` is ``classify(pool(...))``. Unless the pooling is learned (attentive), a clip's
    pooled vector never changes, so training pools each clip once and fits ``classify`` only.
    """

    def __init__(self, dim: int, num_classes: int, pooling: str, hidden_size: int, dropout: float):
        super().__init__()
        if pooling not in POOLINGS:
            raise PipelineError(f"train.pooling={pooling!r} is not one of {', '.join(POOLINGS)}")
        self.pooling = pooling
        self.attention = AttentivePooling(dim) if pooling == "attentive" else None
        self.frame_norm = nn.LayerNorm(dim, elementwise_affine=False) if pooling == "attentive" else None
        self.learned_pooling = self.attention is not None
        pooled_dim = dim if pooling == "mean" else 2 * dim
        self.register_buffer("pooled_mean", torch.zeros(pooled_dim))
        self.register_buffer("pooled_std", torch.ones(pooled_dim))
        self.mlp = mlp_head(pooled_dim, num_classes, hidden_size, dropout)

    def pool(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.attention is not None:
            return self.attention(self.frame_norm(features), mask)
        mean, std = masked_mean_std(features, mask)
        return mean if self.pooling == "mean" else torch.cat([mean, std], dim=-1)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.mlp((pooled - self.pooled_mean) / self.pooled_std)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pool(features, mask))

    @torch.no_grad()
    def fit_standardisation(self, pooled: torch.Tensor) -> None:
        """Standardise with the training split's pooled vectors (random-weight features vary in scale)."""
        self.pooled_mean.copy_(pooled.mean(dim=0))
        self.pooled_std.copy_(pooled.std(dim=0).clamp(min=1e-6))


class LayerSummaryClassifier(nn.Module):
    """Layer summaries: per-layer standardisation, one layer or a softmax-weighted sum, then the MLP.

    Each layer's statistics are standardised with training-split statistics before they are
    mixed, so that the learned weights compare layers rather than the scales of their
    activations. With ``pooling="mean"`` the weighted sum of per-layer means is exactly the
    time mean of the weighted sum of the layers' frames (the SUPERB probe's input); with
    ``mean_std`` the std half is the weighted sum of per-layer stds.
    """

    def __init__(self, num_layers: int, dim: int, num_classes: int, pooling: str, weighted: bool,
                 hidden_size: int, dropout: float):
        super().__init__()
        if pooling not in ("mean", "mean_std"):
            raise PipelineError(f"train.pooling={pooling!r} does not apply to layer summaries: use mean or mean_std")
        self.statistics = 1 if pooling == "mean" else 2
        self.learned_pooling = False
        pooled_dim = self.statistics * dim
        self.register_buffer("layer_mean", torch.zeros(num_layers, pooled_dim))
        self.register_buffer("layer_std", torch.ones(num_layers, pooled_dim))
        # Uniform at the start, as in SUPERB; a single layer has no weights to learn.
        self.layer_logits = nn.Parameter(torch.zeros(num_layers)) if weighted else None
        self.mlp = mlp_head(pooled_dim, num_classes, hidden_size, dropout)

    def pool(self, summaries: torch.Tensor) -> torch.Tensor:
        """``(batch, layers, 2, dim)`` -> ``(batch, layers, statistics × dim)``."""
        return summaries[:, :, : self.statistics].flatten(start_dim=2)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        pooled = (pooled - self.layer_mean) / self.layer_std
        if self.layer_logits is None:
            return self.mlp(pooled[:, 0])
        weights = torch.softmax(self.layer_logits, dim=0)
        return self.mlp((weights[None, :, None] * pooled).sum(dim=1))

    def forward(self, summaries: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pool(summaries))

    def layer_weights(self) -> list[float]:
        return torch.softmax(self.layer_logits.detach(), dim=0).tolist()

    @torch.no_grad()
    def fit_standardisation(self, pooled: torch.Tensor) -> None:
        self.layer_mean.copy_(pooled.mean(dim=0))
        self.layer_std.copy_(pooled.std(dim=0).clamp(min=1e-6))


def build_classifier(config: TrainConfig, input_shape: Sequence[int]) -> nn.Module:
    """The classifier for ``config.features``; ``input_shape`` is an :class:`EmbeddingDataset`'s."""
    if config.features == "sequence":
        return PooledMLPClassifier(input_shape[0], len(EMOTION_NAMES), config.pooling, config.hidden_size,
                                   config.dropout)
    num_layers, _, dim = input_shape
    return LayerSummaryClassifier(num_layers, dim, len(EMOTION_NAMES), config.pooling,
                                  config.summary_layer is None, config.hidden_size, config.dropout)


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
    input_shape: tuple[int, ...] = ()


def train_classifier(rows: Sequence[ManifestRow], root: Path, config: TrainConfig, progress: bool = True,
                     loaded: dict[Path, np.ndarray] | None = None) -> TrainResult:
    """Train on one fold's training actors and evaluate on its splits (``loaded``: see :class:`EmbeddingDataset`)."""
    device = resolve_device(config.device)
    with one_cpu_thread(device):
        return _train(rows, root, config, device, progress, loaded)


def _train(rows: Sequence[ManifestRow], root: Path, config: TrainConfig, device: torch.device,
           progress: bool, loaded: dict[Path, np.ndarray] | None) -> TrainResult:
    from tqdm import tqdm

    generator = seed_everything(config.seed, device)
    val_actors, test_actors = fold_actors(config.folds, config.fold)
    splits = split_by_actor(rows, val_actors, test_actors)
    datasets = {name: EmbeddingDataset(getattr(splits, name), root, config.features, config.summary_layer, loaded)
                for name in SPLITS}
    shapes = {name: ds.input_shape for name, ds in datasets.items()}
    if len(set(shapes.values())) != 1:
        raise PipelineError(f"embedding shapes differ between splits: {shapes}; rerun embed for every actor")
    collate = pad_batch if config.features == "sequence" else stack_batch
    loaders = {name: DataLoader(ds, batch_size=config.batch_size, collate_fn=collate) for name, ds in datasets.items()}
    model = build_classifier(config, shapes["train"])
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
    bar = tqdm(range(1, config.max_epochs + 1), desc=f"train fold {config.fold}", unit="epoch", disable=not progress)
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
        val = classification_metrics(val_labels, val_predictions)
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
        metrics[name] = classification_metrics(labels, predictions) | {"loss": round(loss, 4), "clips": len(labels)}
        if name == "test":
            test_predictions = [
                {"clip_id": row.clip_id, "actor": row.actor, "actual": EMOTION_NAMES[y], "predicted": EMOTION_NAMES[p]}
                for row, y, p in zip(splits.test, labels, predictions)
            ]
    if isinstance(model, LayerSummaryClassifier) and model.layer_logits is not None:
        metrics["layer_weights"] = {str(layer): round(w, 4) for layer, w in enumerate(model.layer_weights())}
    metrics["splits"] = {
        "fold": config.fold,
        "train_actors": list(splits.train_actors),
        "val_actors": list(val_actors),
        "test_actors": list(test_actors),
    }
    return TrainResult(model.cpu(), metrics, history, test_predictions, shapes["train"])


def save_classifier(path: Path, model: nn.Module, config: TrainConfig, input_shape: Sequence[int]) -> None:
    """Weights as safetensors (byte-deterministic, unlike torch.save), with config and labels as metadata."""
    from safetensors.torch import save_file

    # One metadata key: safetensors writes several in random (hash map) order.
    description = {"train_config": asdict(config), "labels": list(EMOTION_NAMES), "input_shape": list(input_shape)}
    metadata = {"classifier": json.dumps(description, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=metadata)


def load_classifier(path: Path) -> tuple[nn.Module, TrainConfig]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        description = json.loads(handle.metadata()["classifier"])
    config = TrainConfig(**description["train_config"])
    model = build_classifier(config, description["input_shape"])
    model.load_state_dict(load_file(str(path)))
    return model.eval(), config


def save_training_outputs(result: TrainResult, config: TrainConfig, model_path: Path, metrics_path: Path,
                          plots_dir: Path) -> None:
    save_classifier(model_path, result.model, config, result.input_shape)
    write_text_atomic(metrics_path, json.dumps(result.metrics, indent=2) + "\n")
    write_csv_atomic(Path(plots_dir) / "test_predictions.csv", result.test_predictions)
    write_csv_atomic(Path(plots_dir) / "training_curves.csv", result.history)
