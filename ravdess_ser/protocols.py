"""Evaluation protocols of RAVDESS, by name: which actors test and validate, which clips and classes count.

A protocol fixes what a published evaluation fixes, and nothing else:

``four-fold`` (the default)
    Four speaker-independent folds of six actors, each three male (odd) and
    three female (even). A fold's run tests on its actors, validates on the
    next fold's (cyclically) and trains on the other twelve. Speech, 8 classes.
``emobox``
    EmoBox (Ma et al., 2024; emo-box/EmoBox, ``data/ravdess/fold_*/``): six
    folds of four test actors, speech only, 8 classes. EmoBox has no
    validation actors: it validates on a random 20% of the training fold's
    utterances, and so does this preset, so that its numbers compare with
    EmoBox's table; ``train.validation=speakers`` validates on the next
    fold's actors instead. Either way the test actors never train or validate.
``pepino2021``
    Pepino, Riera and Ferrer, Interspeech 2021 (habla-liaa/ser-with-w2v2): one
    split, training actors 1-20, validation 21-22, test 23-24; speech and song;
    7 classes (calm merged into neutral); 5 seeds, reported as mean ± std.
``custom``
    The folds of ``train.folds``, run as ``four-fold`` runs its own.

``train.validation``, ``train.classes`` and ``train.seeds`` are ``auto`` by
default, which takes the protocol's choice; any other value overrides it, and
the report lists the overrides, so a run that departs from a protocol says so.
Per-speaker normalisation (``train.normalisation=speaker``) uses each test
speaker's own unlabelled clips: its results are marked transductive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ravdess_ser.errors import PipelineError
from ravdess_ser.ravdess import EMOTION_NAMES, EMOTIONS, VOCAL_CHANNELS

AUTO = "auto"
CUSTOM = "custom"
VALIDATIONS = ("speakers", "utterances")
NORMALISATIONS = ("global", "speaker")
CLASS_SETS = ("8", "7")  # 7: calm merged into neutral
FOLDS_HELP = ("train.protocol=custom only: speaker-independent folds, name -> actors (an actor in one fold at most); "
              "the run of a fold tests on its actors, validates on the next fold's (cyclically) and trains on the rest")


@dataclass(frozen=True)
class Fold:
    """One run's split of the actors: ``val_actors`` validate when validation is by speakers."""

    name: str
    test_actors: tuple[int, ...]
    val_actors: tuple[int, ...]


@dataclass(frozen=True)
class ProtocolPreset:
    """What a named protocol fixes: its folds, the vocal channels it uses, and its defaults for the ``auto`` params."""

    folds: tuple[Fold, ...]
    subsets: tuple[str, ...]
    validation: str
    classes: str
    seeds: int
    source: str


def cyclic_folds(folds: Mapping[str, Sequence[int]]) -> tuple[Fold, ...]:
    """Folds whose runs validate on the next fold's actors, cyclically."""
    names = list(folds)
    return tuple(Fold(name, tuple(folds[name]), tuple(folds[names[(i + 1) % len(names)]]))
                 for i, name in enumerate(names))


FOUR_FOLDS = {"1": (1, 2, 3, 4, 5, 6), "2": (7, 8, 9, 10, 11, 12),
              "3": (13, 14, 15, 16, 17, 18), "4": (19, 20, 21, 22, 23, 24)}
# EmoBox's released fold files, data/ravdess/fold_<k>/ (test actors of each fold).
EMOBOX_FOLDS = {"1": (1, 11, 20, 21), "2": (4, 10, 12, 14), "3": (8, 9, 19, 23),
                "4": (3, 5, 7, 24), "5": (2, 15, 16, 18), "6": (6, 13, 17, 22)}

PROTOCOLS: dict[str, ProtocolPreset] = {
    "four-fold": ProtocolPreset(cyclic_folds(FOUR_FOLDS), ("speech",), "speakers", "8", 1,
                                "this project's gender-balanced 4-fold cross-validation"),
    "emobox": ProtocolPreset(cyclic_folds(EMOBOX_FOLDS), ("speech",), "utterances", "8", 1,
                             "EmoBox (Ma et al., Interspeech 2024), RAVDESS folds 1-6"),
    "pepino2021": ProtocolPreset((Fold("1", (23, 24), (21, 22)),), ("speech", "song"), "speakers", "7", 5,
                                 "Pepino, Riera and Ferrer (Interspeech 2021), actors 1-20 / 21-22 / 23-24"),
}
PROTOCOL_NAMES = (*PROTOCOLS, CUSTOM)


@dataclass(frozen=True)
class Protocol:
    """A protocol with the run's ``auto`` params resolved: everything that decides the splits, labels and runs."""

    name: str
    folds: tuple[Fold, ...]
    subsets: tuple[str, ...] | None  # None: every vocal channel in the manifest (train.protocol=custom)
    validation: str
    classes: tuple[str, ...]
    seeds: tuple[int, ...]
    normalisation: str
    overrides: tuple[str, ...]  # the params given a value other than the protocol's

    def fold(self, name: str) -> Fold:
        for fold in self.folds:
            if fold.name == name:
                return fold
        raise PipelineError(f"train.fold={name!r} is not a fold of train.protocol={self.name} "
                            f"({', '.join(f.name for f in self.folds)})")

    @property
    def transductive(self) -> bool:
        """Per-speaker statistics of the test speakers come from their own (unlabelled) clips."""
        return self.normalisation == "speaker"

    def describe(self) -> dict:
        """The report's record of what ran, for metrics.json."""
        return {
            "name": self.name,
            "classes": len(self.classes),
            "seeds": len(self.seeds),
            "validation": self.validation,
            "normalisation": self.normalisation,
            "transductive": self.transductive,
            "subsets": "+".join(self.subsets) if self.subsets else "manifest",
            "overrides": ", ".join(self.overrides) or "none",
        }


def checked_folds(folds: Mapping) -> dict[str, tuple[int, ...]]:
    """``folds`` as ``{name: actors}``, after checking that every actor is listed once at most."""
    if not isinstance(folds, Mapping):
        raise PipelineError(f"train.folds must map fold names to their actors, got {folds!r}")
    checked: dict[str, tuple[int, ...]] = {}
    fold_of: dict[int, str] = {}
    for name, actors in folds.items():
        if not isinstance(name, str):
            raise PipelineError(f"train.folds: fold name {name!r} must be a string; quote it ('{name}': [...])")
        if isinstance(actors, (str, bytes)) or not isinstance(actors, Sequence) or not actors:
            raise PipelineError(f"train.folds['{name}'] must be a non-empty list of actor numbers, got {actors!r}")
        for actor in actors:
            if isinstance(actor, bool) or not isinstance(actor, int):
                raise PipelineError(f"train.folds['{name}'] lists {actor!r}, which is not an actor number")
            if actor in fold_of:
                where = "twice in fold" if fold_of[actor] == name else f"in fold '{fold_of[actor]}' and in fold"
                raise PipelineError(f"train.folds: actor {actor} is listed {where} '{name}'; "
                                    "an actor may be in one fold only, once")
            fold_of[actor] = name
        checked[name] = tuple(actors)
    return checked


def emotion_classes(class_set: str) -> tuple[str, ...]:
    """The class names, in RAVDESS order: all eight emotions, or seven with calm merged into neutral."""
    return EMOTION_NAMES if class_set == "8" else tuple(name for name in EMOTION_NAMES if name != "calm")


def class_of(emotion: int, classes: Sequence[str]) -> int:
    """The class index of a RAVDESS emotion code (calm counts as neutral when calm is no class)."""
    name = EMOTIONS[emotion]
    return classes.index("neutral" if name == "calm" and "calm" not in classes else name)


def vocal_channel_codes(subsets: Sequence[str]) -> set[int]:
    return {code for code, name in VOCAL_CHANNELS.items() if name in subsets}


def _auto_int(key: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise PipelineError(f"{key}={value!r}: must be {AUTO} (the protocol's) or a positive integer")
    return int(value)


def resolve_protocol(protocol: str, folds: Mapping, validation: str, classes: str, seeds: str, seed: int,
                     normalisation: str) -> Protocol:
    """The protocol ``protocol`` names, with the ``auto`` params taken from it (see the module docstring)."""
    if protocol not in PROTOCOL_NAMES:
        raise PipelineError(f"train.protocol={protocol!r} is not one of {', '.join(PROTOCOL_NAMES)}")
    folds = checked_folds(folds)
    if protocol == CUSTOM:
        if len(folds) < 2:
            raise PipelineError("train.protocol=custom needs train.folds: at least two fold names mapped to their "
                                "actors (a run tests on one fold and validates on the next)")
        preset = ProtocolPreset(cyclic_folds(folds), None, "speakers", "8", 1, "train.folds")
    elif folds:
        raise PipelineError(f"train.folds is set, but train.protocol={protocol} has folds of its own; "
                            "set train.protocol=custom to use train.folds (or train.folds: {})")
    else:
        preset = PROTOCOLS[protocol]
    for key, value, allowed in (("validation", validation, VALIDATIONS), ("classes", classes, CLASS_SETS)):
        if value != AUTO and value not in allowed:
            raise PipelineError(f"train.{key}={value!r} is not one of {AUTO}, {', '.join(allowed)}")
    if normalisation not in NORMALISATIONS:
        raise PipelineError(f"train.normalisation={normalisation!r} is not one of {', '.join(NORMALISATIONS)}")
    seed_count = preset.seeds if seeds == AUTO else _auto_int("train.seeds", seeds)
    chosen = {"validation": preset.validation if validation == AUTO else validation,
              "classes": preset.classes if classes == AUTO else classes}
    overrides = [f"{key}={chosen[key]}" for key in chosen if chosen[key] != getattr(preset, key)]
    if seed_count != preset.seeds:
        overrides.append(f"seeds={seed_count}")
    return Protocol(protocol, preset.folds, preset.subsets, chosen["validation"], emotion_classes(chosen["classes"]),
                    tuple(range(seed, seed + seed_count)), normalisation, tuple(overrides))
