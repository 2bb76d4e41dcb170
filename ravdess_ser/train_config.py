"""The classifier's settings (the ``train`` section of params.yaml), apart from torch.

Stages that only read them (crossval) need not import torch or the training code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ravdess_ser.params import (DEVICES_ALLOWED, check_param, convert_params, param, positive,
                                valid_device)
from ravdess_ser.errors import PipelineError
from ravdess_ser.protocols import AUTO, FOLDS_HELP, PROTOCOL_NAMES, Protocol, checked_folds, resolve_protocol

POOLINGS = ("mean", "mean_std", "attentive")
FEATURES = ("sequence", "layer_summary")
WEIGHTED = "weighted"


@dataclass(frozen=True)
class TrainConfig:
    protocol: str = param("four-fold", f"the evaluation protocol: {', '.join(PROTOCOL_NAMES)} "
                          "(docs/training.md; custom runs train.folds)")
    folds: dict[str, tuple[int, ...]] = param({}, FOLDS_HELP)
    fold: str = param("1", "the train stage's fold: the name of one of the protocol's folds")
    validation: str = param(AUTO, "auto (the protocol's), speakers (the next fold's actors, or the protocol's "
                            "validation actors) or utterances (a random fifth of the training actors' clips, as EmoBox)")
    classes: str = param(AUTO, "auto (the protocol's), 8 (every RAVDESS emotion) or 7 (calm merged into neutral)")
    seeds: str = param(AUTO, "auto (the protocol's: pepino2021 5, others 1) or a number of seeds: runs use seed, "
                       "seed + 1, ...; results are mean ± std over seeds and folds")
    normalisation: str = param("global", "global: standardise with training-split statistics; speaker: first "
                               "normalise each actor's frames with that actor's own statistics (transductive "
                               "for the test actors)")
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
        object.__setattr__(self, "fold", str(self.fold))
        object.__setattr__(self, "folds", checked_folds(self.folds))
        self.resolved_protocol  # checks the protocol's params (the train stage checks train.fold against it)
        object.__setattr__(self, "layer", str(self.layer))
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

    @cached_property
    def resolved_protocol(self) -> Protocol:
        return resolve_protocol(self.protocol, self.folds, self.validation, self.classes, self.seeds, self.seed,
                                self.normalisation)

    @property
    def summary_layer(self) -> int | None:
        """The one layer read from the layer summaries, or None for all of them (weighted) or for frames."""
        return None if self.layer == WEIGHTED else int(self.layer)
