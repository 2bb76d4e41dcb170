"""Baseline emotion classifier on frozen wav2vec2 embeddings.

Speaker-independent protocol: validation and test actors are named in params
and never share a split with training actors. The model pools each clip's
``(time, features)`` sequence into one vector (mean, mean and standard
deviation, or attentive pooling), standardises it with statistics of the
training split only, and classifies it with a small MLP. Training is seeded
and deterministic, with early stopping on validation unweighted accuracy.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ravdess_ser.cli import param
from ravdess_ser.atomic import atomic_path, write_text_atomic
from ravdess_ser.device import resolve_device
from ravdess_ser.errors import PipelineError
from ravdess_ser.manifest import OK, ManifestRow
from ravdess_ser.ravdess import EMOTION_NAMES, EMOTIONS

log = logging.getLogger(__name__)

POOLINGS = ("mean", "mean_std", "attentive")


@dataclass(frozen=True)
class TrainConfig:
    val_actors: tuple[int, ...] = param((17, 18, 19, 20), "actors held out for early stopping")
    test_actors: tuple[int, ...] = param((21, 22, 23, 24), "actors held out for the reported metrics")
    pooling: str = param("mean_std", "pooling over time: mean, mean_std or attentive")
    hidden_size: int = param(256, "width of the MLP's hidden layer")
    dropout: float = param(0.3, "dropout before the output layer")
    batch_size: int = param(32, "clips per training batch")
    learning_rate: float = param(1e-3, "AdamW learning rate")
    weight_decay: float = param(1e-4, "AdamW weight decay")
    max_epochs: int = param(100, "upper bound on training epochs")
    patience: int = param(15, "stop after this many epochs without a better validation unweighted accuracy")
    seed: int = param(0, "seed for initialisation and batch order")
    device: str = param("auto", "torch device: auto (CUDA if available, else CPU), cpu, cuda")


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
        raise PipelineError(f"actor(s) {sorted(overlap)} are listed in both train.val_actors and train.test_actors")
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
            raise PipelineError(f"train.{name}_actors names actor(s) {missing} that have no usable clips in the manifest")
        if not split:
            raise PipelineError(f"the {name} split has no clips (train.{name}_actors = {list(actors)})")
    if not splits.train:
        raise PipelineError("the training split has no clips: every actor is in val or test")
    missing_emotions = sorted(set(EMOTIONS) - {row.emotion for row in splits.train})
    if missing_emotions:
        names = ", ".join(EMOTIONS[code] for code in missing_emotions)
        raise PipelineError(f"emotion(s) {names} have no clips in the training split; the classifier could never predict them")
    return splits


class EmbeddingDataset(Dataset):
    """Clips of one split: ``(features (time, dim) float32, label 0..7)``, all held in memory."""

    def __init__(self, rows: Sequence[ManifestRow], root: Path):
        self.rows = list(rows)
        self.features = []
        dim = None
        for row in self.rows:
            path = Path(root) / row.embedding_path
            try:
                array = np.load(path)
            except (OSError, ValueError) as error:
                raise PipelineError(f"cannot read embedding ({error})", path) from None
            if array.ndim != 2 or array.shape[0] == 0:
                raise PipelineError(f"expected a (time, features) array, got shape {array.shape}", path)
            if dim is None:
                dim, first = array.shape[1], path
            elif array.shape[1] != dim:
                raise PipelineError(
                    f"embedding has {array.shape[1]} features but {first} has {dim}; "
                    "embeddings from different models or layers are mixed (rerun embed for every actor)",
                    path,
                )
            self.features.append(torch.from_numpy(array.astype(np.float32, copy=False)))
        self.labels = torch.tensor([row.emotion - 1 for row in self.rows], dtype=torch.long)
        self.dim = dim

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


class PooledMLPClassifier(nn.Module):
    """Pool over time, standardise, then Linear-ReLU-Dropout-Linear."""

    def __init__(self, dim: int, num_classes: int, pooling: str, hidden_size: int, dropout: float):
        super().__init__()
        if pooling not in POOLINGS:
            raise PipelineError(f"train.pooling={pooling!r} is not one of {', '.join(POOLINGS)}")
        self.pooling = pooling
        self.input_dim = dim
        self.attention = AttentivePooling(dim) if pooling == "attentive" else None
        self.frame_norm = nn.LayerNorm(dim, elementwise_affine=False) if pooling == "attentive" else None
        pooled_dim = dim if pooling == "mean" else 2 * dim
        self.register_buffer("pooled_mean", torch.zeros(pooled_dim))
        self.register_buffer("pooled_std", torch.ones(pooled_dim))
        self.mlp = nn.Sequential(
            nn.Linear(pooled_dim, hidden_size), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_size, num_classes)
        )

    def pool(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.attention is not None:
            return self.attention(self.frame_norm(features), mask)
        mean, std = masked_mean_std(features, mask)
        return mean if self.pooling == "mean" else torch.cat([mean, std], dim=-1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooled = (self.pool(features, mask) - self.pooled_mean) / self.pooled_std
        return self.mlp(pooled)

    @torch.no_grad()
    def fit_standardisation(self, loader: DataLoader) -> None:
        """Standardise pooled features with training-split statistics (random-weight features vary in scale)."""
        pooled = torch.cat([self.pool(features, mask) for features, mask, _ in loader])
        self.pooled_mean.copy_(pooled.mean(dim=0))
        self.pooled_std.copy_(pooled.std(dim=0).clamp(min=1e-6))


def seed_everything(seed: int) -> torch.Generator:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True)
    return torch.Generator().manual_seed(seed)


def classification_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict:
    """Accuracy (weighted), unweighted accuracy (mean per-class recall), macro F1 and per-emotion recall."""
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    classes = list(range(len(EMOTION_NAMES)))
    present = sorted(set(labels.tolist()))
    recall = recall_score(labels, predictions, labels=classes, average=None, zero_division=0)
    return {
        "accuracy": round(float(accuracy_score(labels, predictions)), 4),
        "unweighted_accuracy": round(float(np.mean([recall[c] for c in present])), 4),
        "macro_f1": round(float(f1_score(labels, predictions, labels=present, average="macro", zero_division=0)), 4),
        "recall": {EMOTION_NAMES[c]: round(float(recall[c]), 4) for c in present},
    }


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device) -> tuple[np.ndarray, np.ndarray, float]:
    model.eval()
    all_labels, all_predictions, total_loss = [], [], 0.0
    for features, mask, labels in loader:
        logits = model(features.to(device), mask.to(device))
        total_loss += nn.functional.cross_entropy(logits, labels.to(device), reduction="sum").item()
        all_predictions.append(logits.argmax(dim=-1).cpu())
        all_labels.append(labels)
    labels = torch.cat(all_labels).numpy()
    return labels, torch.cat(all_predictions).numpy(), total_loss / max(len(labels), 1)


@dataclass
class TrainResult:
    model: PooledMLPClassifier
    metrics: dict
    history: list[dict]
    test_predictions: list[dict]


def train_classifier(rows: Sequence[ManifestRow], root: Path, config: TrainConfig, progress: bool = True) -> TrainResult:
    from tqdm import tqdm

    generator = seed_everything(config.seed)
    device = resolve_device(config.device)
    splits = split_by_actor(rows, config.val_actors, config.test_actors)
    datasets = {name: EmbeddingDataset(getattr(splits, name), root) for name in ("train", "val", "test")}
    dims = {name: ds.dim for name, ds in datasets.items()}
    if len(set(dims.values())) != 1:
        raise PipelineError(f"embedding dimensions differ between splits: {dims}; rerun embed for every actor")
    loaders = {
        name: DataLoader(ds, batch_size=config.batch_size, shuffle=False, collate_fn=pad_batch)
        for name, ds in datasets.items()
    }
    train_loader = DataLoader(
        datasets["train"], batch_size=config.batch_size, shuffle=True, collate_fn=pad_batch, generator=generator
    )
    model = PooledMLPClassifier(
        datasets["train"].dim, len(EMOTION_NAMES), config.pooling, config.hidden_size, config.dropout
    )
    model.fit_standardisation(loaders["train"])
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)

    history, best_score, best_state, best_epoch, since_best = [], -1.0, None, 0, 0
    bar = tqdm(range(1, config.max_epochs + 1), desc="train", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        train_loss, seen = 0.0, 0
        for features, mask, labels in train_loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(features.to(device), mask.to(device)), labels.to(device))
            loss.backward()
            optimizer.step()
            train_loss += loss.item() * len(labels)
            seen += len(labels)
        val_labels, val_predictions, val_loss = predict(model, loaders["val"], device)
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

    metrics = {"best_epoch": best_epoch, "epochs_run": len(history)}
    test_predictions = []
    for name in ("train", "val", "test"):
        labels, predictions, loss = predict(model, loaders[name], device)
        metrics[name] = classification_metrics(labels, predictions) | {"loss": round(loss, 4), "clips": len(labels)}
        if name == "test":
            test_predictions = [
                {"clip_id": row.clip_id, "actor": row.actor, "actual": EMOTION_NAMES[y], "predicted": EMOTION_NAMES[p]}
                for row, y, p in zip(splits.test, labels, predictions)
            ]
    metrics["splits"] = {
        "train_actors": list(splits.train_actors),
        "val_actors": list(config.val_actors),
        "test_actors": list(config.test_actors),
    }
    return TrainResult(model.cpu(), metrics, history, test_predictions)


def _write_csv(path: Path, records: Sequence[dict]) -> None:
    import csv

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)


def save_classifier(path: Path, model: PooledMLPClassifier, config: TrainConfig) -> None:
    """Weights as safetensors (byte-deterministic, unlike torch.save), with config and labels as metadata."""
    from safetensors.torch import save_file

    # One metadata key: safetensors writes several in random (hash map) order.
    description = {"train_config": asdict(config), "labels": list(EMOTION_NAMES), "input_dim": model.input_dim}
    metadata = {"classifier": json.dumps(description, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=metadata)


def load_classifier(path: Path) -> tuple[PooledMLPClassifier, TrainConfig]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        description = json.loads(handle.metadata()["classifier"])
    values = description["train_config"]
    config = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    model = PooledMLPClassifier(description["input_dim"], len(description["labels"]), config.pooling,
                                config.hidden_size, config.dropout)
    model.load_state_dict(load_file(str(path)))
    return model.eval(), config


def save_training_outputs(result: TrainResult, config: TrainConfig, model_path: Path, metrics_path: Path,
                          plots_dir: Path) -> None:
    save_classifier(model_path, result.model, config)
    write_text_atomic(metrics_path, json.dumps(result.metrics, indent=2) + "\n")
    _write_csv(Path(plots_dir) / "test_predictions.csv", result.test_predictions)
    _write_csv(Path(plots_dir) / "training_curves.csv", result.history)
