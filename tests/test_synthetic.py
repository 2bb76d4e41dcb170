"""Tests for the synthetic RAVDESS stand-in (ravdess_ser.synthetic), speech and song."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

import ravdess_ser.synthetic as synthetic
from ravdess_ser.atomic import TEMP_PREFIX
from ravdess_ser.errors import PipelineError
from ravdess_ser.ravdess import (
    EMOTIONS,
    SAMPLE_RATE,
    ClipName,
    actor_dirname,
    parse_clip_name,
    song_clip_names,
    speech_clip_names,
)
from ravdess_ser.synthetic import generate_corpus, synthesize_clip

SEED = 1234
SHORT = 0.5  # seconds: enough for the format and determinism checks

# ---------------------------------------------------------------------------
# Format
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    raw = tmp_path_factory.mktemp("synthetic") / "raw"
    paths = generate_corpus(raw, [1, 2, 3], seed=SEED, clip_seconds=SHORT, progress=False)
    return raw, paths


def test_layout_and_names_follow_ravdess(small_corpus):
    raw, paths = small_corpus
    assert sorted(p.name for p in raw.iterdir()) == ["Actor_01", "Actor_02", "Actor_03"]
    assert len(paths) == 180
    for actor in (1, 2, 3):
        folder = raw / actor_dirname(actor)
        names = sorted(p.name for p in folder.iterdir())
        assert names == sorted(clip.filename for clip in speech_clip_names(actor))
        assert not any(name.startswith(TEMP_PREFIX) for name in names)
        clips = [parse_clip_name(folder / name) for name in names]
        assert {clip.actor for clip in clips} == {actor}
        per_emotion = {e: sum(clip.emotion == e for clip in clips) for e in EMOTIONS}
        assert per_emotion == {1: 4, **{e: 8 for e in range(2, 9)}}
    assert sorted(paths) == sorted(raw.glob("Actor_*/*.wav"))


def check_format_levels_and_lengths(paths, mean_seconds):
    lengths = []
    for path in paths:
        info = sf.info(path)
        assert (info.format, info.subtype) == ("WAV", "PCM_16")
        assert info.samplerate == SAMPLE_RATE == 48_000
        assert info.channels == 1
        pcm, _ = sf.read(path, dtype="int16")
        assert pcm.ndim == 1
        peak = int(np.abs(pcm.astype(np.int32)).max())
        assert peak < 32767, f"{path.name} clips"
        assert peak > 300, f"{path.name} is (nearly) silent"  # > -40 dBFS
        audio = pcm / 32768.0
        # Leading and trailing near-silence around louder speech.
        edge = int(0.03 * SAMPLE_RATE)
        windows = audio[: audio.size // edge * edge].reshape(-1, edge)
        window_rms = np.sqrt(np.mean(windows**2, axis=1))
        assert window_rms[0] < 0.1 * window_rms.max(), path.name
        assert window_rms[-1] < 0.1 * window_rms.max(), path.name
        lead = windows[: int(0.1 * SHORT * SAMPLE_RATE) // edge]  # before any speech
        assert np.sqrt(np.mean(lead**2, axis=1)).max() < 10 ** (-60 / 20), path.name
        lengths.append(info.frames / info.samplerate)
    lengths = np.array(lengths)
    assert 0.9 * mean_seconds < lengths.mean() < 1.1 * mean_seconds
    assert lengths.min() > 0.6 * mean_seconds and lengths.max() < 1.6 * mean_seconds
    assert lengths.std() > 0.05 * mean_seconds  # tempo and repetition vary the length


def test_audio_format_levels_and_lengths(small_corpus):
    check_format_levels_and_lengths(small_corpus[1], SHORT)


def test_synthesize_clip_returns_float32_in_range():
    clip = ClipName(3, 1, 5, 2, 1, 1, 7)  # strong anger: the loudest kind of clip
    audio = synthesize_clip(clip, SEED, 1.0)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.all(np.isfinite(audio))
    assert np.abs(audio).max() <= 1.0
    again = synthesize_clip(clip, SEED, 1.0)
    assert np.array_equal(audio, again)
    longer = synthesize_clip(clip, SEED, 2.0)
    assert 1.7 < longer.size / audio.size < 2.3


def test_progress_bar_counts_clips(tmp_path, capsys):
    generate_corpus(tmp_path, [24], seed=SEED, clip_seconds=0.3, progress=True)
    assert "60/60" in capsys.readouterr().err
    generate_corpus(tmp_path, [18, 24], seed=SEED, clip_seconds=0.3, progress=True, subsets=["song"])
    assert "44/44" in capsys.readouterr().err  # actor 18 has no song


def test_interrupted_actor_leaves_only_complete_files(tmp_path, monkeypatch):
    real = synthetic.synthesize_clip
    calls = []

    def flaky(clip, seed, clip_seconds, sample_rate=SAMPLE_RATE):
        calls.append(clip)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(clip, seed, clip_seconds, sample_rate)

    monkeypatch.setattr(synthetic, "synthesize_clip", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_corpus(tmp_path, [5], SEED, 0.3, progress=False)
    left = sorted((tmp_path / "Actor_05").iterdir())
    assert [p.name for p in left] == [clip.filename for clip in speech_clip_names(5)[:4]]
    for path in left:
        assert sf.info(path).frames > 0


# ---------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------


def test_actor_alone_is_byte_identical_to_actor_in_corpus(small_corpus, tmp_path):
    raw, _ = small_corpus
    alone = generate_corpus(tmp_path, [3], SEED, SHORT, progress=False)
    assert [p.name for p in alone] == sorted(clip.filename for clip in speech_clip_names(3))
    for path in alone:
        assert path.read_bytes() == (raw / "Actor_03" / path.name).read_bytes(), path.name


def test_generation_order_does_not_matter(small_corpus):
    clips = speech_clip_names(1)
    forward = [synthesize_clip(c, SEED, SHORT) for c in clips[:6]]
    backward = [synthesize_clip(c, SEED, SHORT) for c in reversed(clips[:6])][::-1]
    assert all(np.array_equal(a, b) for a, b in zip(forward, backward))


def test_different_seed_or_length_gives_different_audio(small_corpus, tmp_path):
    raw, _ = small_corpus
    other = generate_corpus(tmp_path, [1], SEED + 1, SHORT, progress=False)
    differing = sum(p.read_bytes() != (raw / "Actor_01" / p.name).read_bytes() for p in other)
    assert differing == 60
    clip = speech_clip_names(2)[10]
    a = synthesize_clip(clip, SEED, SHORT)
    b = synthesize_clip(clip, SEED + 1, SHORT)
    n = min(a.size, b.size)
    assert abs(np.corrcoef(a[:n], b[:n])[0, 1]) < 0.5
    assert synthesize_clip(clip, SEED, SHORT * 1.2).size != a.size


def test_clips_of_one_actor_all_differ(small_corpus):
    raw, _ = small_corpus
    contents = {p.read_bytes() for p in (raw / "Actor_01").iterdir()}
    assert len(contents) == 60


# ---------------------------------------------------------------------------
# Song
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def song_corpus(tmp_path_factory):
    raw = tmp_path_factory.mktemp("synthetic-song") / "raw"
    paths = generate_corpus(raw, [2], seed=SEED, clip_seconds=SHORT, progress=False, subsets=["speech", "song"])
    return raw, paths


def test_song_clips_follow_ravdess(song_corpus, tmp_path):
    raw, paths = song_corpus
    assert len(paths) == 60 + 44
    songs = [parse_clip_name(path) for path in sorted(raw.glob("Actor_*/03-02-*.wav"))]
    assert [clip.filename for clip in songs] == [clip.filename for clip in song_clip_names(2)]
    assert {(clip.modality, clip.vocal_channel, clip.actor, clip.subset) for clip in songs} == {(3, 2, 2, "song")}
    per_emotion = {e: sum(clip.emotion == e for clip in songs) for e in EMOTIONS}
    assert per_emotion == {1: 4, **{e: 8 for e in range(2, 7)}, 7: 0, 8: 0}
    assert generate_corpus(tmp_path, [18], seed=SEED, clip_seconds=SHORT, progress=False, subsets=["song"]) == []
    assert list((tmp_path / "Actor_18").iterdir()) == []  # actor 18 has no song


def test_song_clips_are_longer_than_speech_and_in_the_same_format(song_corpus):
    raw, _ = song_corpus
    check_format_levels_and_lengths(sorted(raw.glob("Actor_*/03-02-*.wav")), 1.17 * SHORT)


def test_asking_for_song_changes_no_speech_clip(small_corpus, song_corpus):
    raw, _ = small_corpus
    with_song, _ = song_corpus
    for path in (raw / "Actor_02").iterdir():
        assert path.read_bytes() == (with_song / "Actor_02" / path.name).read_bytes(), path.name


def test_a_song_clip_is_not_its_spoken_twin():
    sung = synthesize_clip(ClipName(3, 2, 3, 1, 1, 1, 5), SEED, 1.0)
    spoken = synthesize_clip(ClipName(3, 1, 3, 1, 1, 1, 5), SEED, 1.0)
    assert sung.size > spoken.size
    assert np.array_equal(sung, synthesize_clip(ClipName(3, 2, 3, 1, 1, 1, 5), SEED, 1.0))


# ---------------------------------------------------------------------------
# Bad arguments
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("clip_seconds", [0, -1.0, math.nan, math.inf, 0.1, 1e6, "2", True])
def test_bad_clip_seconds(tmp_path, clip_seconds):
    with pytest.raises(PipelineError, match="clip_seconds"):
        generate_corpus(tmp_path, [1], seed=SEED, clip_seconds=clip_seconds, progress=False)
    with pytest.raises(PipelineError, match="clip_seconds"):
        synthesize_clip(speech_clip_names(1)[0], SEED, clip_seconds)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("actor", [0, 25, -3, 2.0, True, "1"])
def test_bad_actor(tmp_path, actor):
    with pytest.raises(PipelineError, match="actor"):
        generate_corpus(tmp_path, [actor], seed=SEED, clip_seconds=1.0, progress=False)
    with pytest.raises(PipelineError, match="actor"):
        generate_corpus(tmp_path, [1, actor], seed=SEED, clip_seconds=1.0, progress=False)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("actors", [[], [1, 2, 1], 3, "12"])
def test_bad_actor_list(tmp_path, actors):
    with pytest.raises(PipelineError):
        generate_corpus(tmp_path, actors, seed=SEED, clip_seconds=1.0, progress=False)


@pytest.mark.parametrize("subsets", [[], ["speech", "speech"], ["sung"], "song", [["song"]]])
def test_bad_subsets(tmp_path, subsets):
    with pytest.raises(PipelineError, match="subsets must be a non-empty sequence of speech and song"):
        generate_corpus(tmp_path, [1], seed=SEED, clip_seconds=1.0, progress=False, subsets=subsets)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("seed", [-1, 1.5, None])
def test_bad_seed(tmp_path, seed):
    with pytest.raises(PipelineError, match="seed"):
        generate_corpus(tmp_path, [1], seed, 1.0, progress=False)


def test_bad_clips():
    with pytest.raises(PipelineError, match="neutral"):
        synthesize_clip(ClipName(3, 1, 1, 2, 1, 1, 1), SEED, 1.0)
    with pytest.raises(PipelineError, match="audio-only"):
        synthesize_clip(ClipName(1, 1, 3, 1, 1, 1, 1), SEED, 1.0)
    with pytest.raises(PipelineError, match="song has only the emotions 01-06"):
        synthesize_clip(ClipName(3, 2, 7, 1, 1, 1, 1), SEED, 1.0)
    with pytest.raises(PipelineError, match="actor 18 has no song"):
        synthesize_clip(ClipName(3, 2, 3, 1, 1, 1, 18), SEED, 1.0)
    with pytest.raises(PipelineError, match="emotion"):
        synthesize_clip(ClipName(3, 1, 9, 1, 1, 1, 1), SEED, 1.0)
    with pytest.raises(PipelineError, match="actor"):
        synthesize_clip(ClipName(3, 1, 3, 1, 1, 1, 30), SEED, 1.0)


# ---------------------------------------------------------------------------
# Learnability: hand-crafted features, speaker-independent nearest centroid
# ---------------------------------------------------------------------------

RATE = 16_000  # features are computed after a crude 3:1 decimation
FRAME, HOP = 512, 256
FEATURES = (
    "energy mean", "energy std", "energy p90", "zero crossings", "centroid", "tilt",
    "F0 median", "F0 range", "F0 slope", "voicing", "speech seconds",
)  # fmt: skip


def clip_features(audio: np.ndarray) -> np.ndarray:
    """Per-clip prosodic and spectral statistics, in plain numpy."""
    x = audio.astype(np.float64)
    x = x[: x.size // 3 * 3].reshape(-1, 3).mean(axis=1)  # 48 kHz -> 16 kHz, boxcar anti-alias
    frames = np.lib.stride_tricks.sliding_window_view(x, 2 * FRAME)[::HOP]
    short = frames[:, :FRAME]
    energy = 10 * np.log10(np.mean(short**2, axis=1) + 1e-12)
    speech = energy > energy.max() - 30
    energy, short, frames = energy[speech], short[speech], frames[speech]
    crossings = np.mean(np.abs(np.diff(np.signbit(short), axis=1)), axis=1)
    power = np.abs(np.fft.rfft(short * np.hanning(FRAME), axis=1)) ** 2
    freqs = np.fft.rfftfreq(FRAME, 1 / RATE)
    centroid = power @ freqs / (power.sum(axis=1) + 1e-20)
    tilt = 10 * np.log10(
        (power[:, freqs > 2000].sum(axis=1) + 1e-20) / (power[:, (freqs > 80) & (freqs < 1000)].sum(axis=1) + 1e-20)
    )
    # F0: autocorrelation peak between 70 and 500 Hz over 64 ms frames.
    centred = frames - frames.mean(axis=1, keepdims=True)
    acf = np.fft.irfft(np.abs(np.fft.rfft(centred * np.hanning(2 * FRAME), 4 * FRAME, axis=1)) ** 2, axis=1)
    low, high = RATE // 500, RATE // 70
    lag = low + acf[:, low:high].argmax(axis=1)
    strength = acf[:, low:high].max(axis=1) / (acf[:, 0] + 1e-20)
    voiced = strength > 0.5
    if voiced.sum() >= 4:
        semitones = 12 * np.log2(RATE / lag[voiced] / 100.0)
        times = np.flatnonzero(speech)[voiced] * HOP / RATE
        slope = np.polyfit(times - times.mean(), semitones, 1)[0]
        f0_median = np.median(semitones)
        f0_range = np.percentile(semitones, 90) - np.percentile(semitones, 10)
    else:
        f0_median, f0_range, slope = 0.0, 0.0, 0.0
    return np.array(
        [
            energy.mean(), energy.std(), np.percentile(energy, 90), crossings.mean(), centroid.mean(),
            tilt.mean(), f0_median, f0_range, slope, strength.mean(), speech.sum() * HOP / RATE,
        ]
    )  # fmt: skip


LEARN_ACTORS = tuple(range(1, 13))
TRAIN_ACTORS = (1, 2, 3, 4, 5, 6, 7, 8)  # four male, four female
TEST_ACTORS = (9, 10, 11, 12)  # two male, two female, never seen in training


@pytest.fixture(scope="module")
def feature_table():
    rows, emotions, intensities, actors = [], [], [], []
    for actor in LEARN_ACTORS:
        for clip in speech_clip_names(actor):
            rows.append(clip_features(synthesize_clip(clip, SEED, 1.0)))
            emotions.append(clip.emotion)
            intensities.append(clip.intensity)
            actors.append(actor)
    return np.array(rows), np.array(emotions), np.array(intensities), np.array(actors)


def speaker_z(features: np.ndarray, actors: np.ndarray) -> np.ndarray:
    """Z-normalise each feature within each speaker (no labels used)."""
    out = np.empty_like(features)
    for actor in np.unique(actors):
        rows = actors == actor
        out[rows] = (features[rows] - features[rows].mean(0)) / (features[rows].std(0) + 1e-9)
    return out


def nearest_centroid_accuracy(features, labels, train, test) -> float:
    classes = np.unique(labels[train])
    centroids = np.array([features[train & (labels == c)].mean(axis=0) for c in classes])
    distances = ((features[test][:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    return float(np.mean(classes[distances.argmin(axis=1)] == labels[test]))


@pytest.mark.slow
def test_emotion_is_learnable_across_speakers(feature_table):
    features, emotions, _, actors = feature_table
    assert np.all(np.isfinite(features))
    train, test = np.isin(actors, TRAIN_ACTORS), np.isin(actors, TEST_ACTORS)
    accuracy = nearest_centroid_accuracy(speaker_z(features, actors), emotions, train, test)
    print(f"\nspeaker-independent 8-way emotion accuracy (speaker z-norm): {accuracy:.1%} (chance 12.5%)")
    assert accuracy > 0.5


@pytest.mark.slow
def test_sung_emotion_is_learnable_across_speakers():
    rows, emotions, actors = [], [], []
    for actor in LEARN_ACTORS:
        for clip in song_clip_names(actor):
            rows.append(clip_features(synthesize_clip(clip, SEED, 1.0)))
            emotions.append(clip.emotion)
            actors.append(actor)
    features, emotions, actors = np.array(rows), np.array(emotions), np.array(actors)
    train, test = np.isin(actors, TRAIN_ACTORS), np.isin(actors, TEST_ACTORS)
    accuracy = nearest_centroid_accuracy(speaker_z(features, actors), emotions, train, test)
    print(f"\nspeaker-independent 6-way sung emotion accuracy (speaker z-norm): {accuracy:.1%} (chance 16.7%)")
    assert accuracy > 0.5


def test_speaker_identity_matters(feature_table):
    features, emotions, _, actors = feature_table
    train, test = np.isin(actors, TRAIN_ACTORS), np.isin(actors, TEST_ACTORS)
    global_z = (features - features[train].mean(0)) / features[train].std(0)
    raw_accuracy = nearest_centroid_accuracy(global_z, emotions, train, test)
    normalised = nearest_centroid_accuracy(speaker_z(features, actors), emotions, train, test)
    print(f"\nemotion accuracy without speaker normalisation: {raw_accuracy:.1%}")
    # Emotion still shows through the voices, but removing the speaker helps.
    assert 0.25 < raw_accuracy < normalised - 0.05
    # Speakers are recognisable within an emotion: train on statement 1, test on statement 2.
    statements = np.tile([c.statement for c in speech_clip_names(1)], len(LEARN_ACTORS))
    emotion_codes = np.tile([(c.emotion, c.intensity) for c in speech_clip_names(1)], (len(LEARN_ACTORS), 1))
    scores = []
    for code in np.unique(emotion_codes, axis=0):
        rows = np.all(emotion_codes == code, axis=1)
        scores.append(
            nearest_centroid_accuracy(global_z[rows], actors[rows], statements[rows] == 1, statements[rows] == 2)
        )
    speaker_accuracy = float(np.mean(scores))
    print(f"12-way speaker identification within an emotion: {speaker_accuracy:.1%} (chance 8.3%)")
    assert speaker_accuracy > 0.25


def test_odd_actors_have_lower_f0_than_even_actors(feature_table):
    features, emotions, _, actors = feature_table
    f0 = features[:, FEATURES.index("F0 median")]
    neutral_hz = {
        actor: 100.0 * 2 ** (np.median(f0[(actors == actor) & (emotions == 1)]) / 12) for actor in LEARN_ACTORS
    }
    male = [hz for actor, hz in neutral_hz.items() if actor % 2 == 1]
    female = [hz for actor, hz in neutral_hz.items() if actor % 2 == 0]
    assert max(male) < min(female), neutral_hz
    assert 85 < np.mean(male) < 150 and 170 < np.mean(female) < 260, neutral_hz


def test_emotion_cues_point_the_right_way(feature_table):
    features, emotions, intensities, actors = feature_table
    column = {name: features[:, i] for i, name in enumerate(FEATURES)}

    def mean(name, emotion, intensity=2):
        return column[name][(emotions == emotion) & (intensities == intensity)].mean()

    assert mean("energy mean", 5) > mean("energy mean", 1, 1) + 5  # angry is loud
    assert mean("energy mean", 4) < mean("energy mean", 1, 1) - 3  # sad is quiet
    assert mean("F0 slope", 8) > 0 > mean("F0 slope", 4)  # surprised rises, sad falls
    assert mean("F0 median", 6) > mean("F0 median", 1, 1) + 3  # fearful is high
    assert mean("speech seconds", 4) > mean("speech seconds", 6)  # sad is slow, fearful fast
    assert mean("tilt", 5) > mean("tilt", 4) + 6  # pressed anger is brighter than breathy sadness
    # Strong intensity moves further from neutral than normal intensity.
    for name in ("energy mean", "F0 median"):
        neutral = mean(name, 1, 1)
        assert abs(mean(name, 5, 2) - neutral) > abs(mean(name, 5, 1) - neutral)
