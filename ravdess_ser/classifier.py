"""The emotion classifiers over frozen embeddings, and their files.

``PooledMLPClassifier`` pools a clip's ``(time, features)`` frames (mean,
mean and standard deviation, or attentive statistics pooling); the
``LayerSummaryClassifier`` reads per-layer means and standard deviations and
uses one layer or a learned softmax-weighted sum of all of them, as the SUPERB
benchmark's probes do. Both standardise their input with training-split
statistics and classify it with a small MLP. A trained classifier is saved as
safetensors, with its config and class names as metadata.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from ravdess_ser.atomic import atomic_path
from ravdess_ser.errors import PipelineError
from ravdess_ser.train_config import POOLINGS, TrainConfig


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


def build_classifier(config: TrainConfig, input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """The classifier for ``config.features``; ``input_shape`` is an ``EmbeddingDataset``'s."""
    if config.features == "sequence":
        return PooledMLPClassifier(input_shape[0], num_classes, config.pooling, config.hidden_size,
                                   config.dropout)
    num_layers, _, dim = input_shape
    return LayerSummaryClassifier(num_layers, dim, num_classes, config.pooling,
                                  config.summary_layer is None, config.hidden_size, config.dropout)


def save_classifier(path: Path, model: nn.Module, config: TrainConfig, input_shape: Sequence[int],
                    classes: Sequence[str]) -> None:
    """Weights as safetensors (byte-deterministic, unlike torch.save), with config and labels as metadata."""
    from safetensors.torch import save_file

    # One metadata key: safetensors writes several in random (hash map) order.
    description = {"train_config": asdict(config), "labels": list(classes), "input_shape": list(input_shape)}
    metadata = {"classifier": json.dumps(description, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=metadata)


def load_classifier(path: Path) -> tuple[nn.Module, TrainConfig, tuple[str, ...]]:
    """The model, its config and its class names."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        description = json.loads(handle.metadata()["classifier"])
    config = TrainConfig(**description["train_config"])
    model = build_classifier(config, description["input_shape"], len(description["labels"]))
    model.load_state_dict(load_file(str(path)))
    return model.eval(), config, tuple(description["labels"])
