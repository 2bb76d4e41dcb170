"""The synthetic corpus's signal processing: from a clip's codes to its samples.

A source-filter model (see :mod:`ravdess_ser.synthetic` for what it models): the utterance is laid out in time,
an F0 track (spoken prosody, or a sung melody) drives a Rosenberg glottal source, a time-varying formant cascade
filters it by overlap-add in the frequency domain, and shaped noise adds the consonants. Transcendental functions
come from :mod:`ravdess_ser.portable_math`, so the samples have the same bits on every CPU. The clip's codes are
not checked here (:func:`ravdess_ser.synthetic.synthesize_clip` does that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ravdess_ser import portable_math as pm
from ravdess_ser.ravdess import ClipName
from ravdess_ser.synthetic_tables import (
    BASE_TILT_DB,
    CONSONANTS,
    MAJOR_SCALE,
    MINOR_EMOTIONS,
    MINOR_SCALE,
    NEUTRAL_RANGE_ST,
    NEUTRAL_SLOPE_ST,
    NOISE_KINDS,
    NOISE_SHAPES,
    SONG_CONSONANT_SCALE,
    SONG_GLIDE_S,
    SONG_LENGTH_FACTOR,
    SONG_LEVEL_DB,
    SONG_MELODIES,
    SONG_TAG,
    STATEMENT_SYLLABLES,
    STRONG,
    VOWELS,
    Style,
    Voice,
    actor_style,
    actor_voice,
)

# Active-speech RMS of a neutral clip of an average actor, dBFS.
_REFERENCE_LEVEL_DB = -32.0
_PEAK_LIMIT = 0.95

# The voiced path (glottal source and vocal tract) runs at half the output rate
# (24 kHz for 48 kHz output: formants and harmonics up to 12 kHz) and is
# band-limited-interpolated to the output rate inside the overlap-add filter.
# Hann frames of _FRAME samples every _HOP at the voice rate, transformed with
# _NFFT points (the zero padding absorbs the resonators' ringing).
_FRAME = 1024
_HOP = _FRAME // 2
_NFFT = 4 * _HOP
_FRAMES_PER_CHUNK = 16


def _fast_length(n: int) -> int:
    """The smallest 2**a * 3**b * 5**c >= n (FFT sizes that pocketfft handles fast)."""
    best = 1 << max(n - 1, 0).bit_length()
    power3 = 1
    while power3 < best:
        power35 = power3
        while power35 < best:
            size = power35
            while size < n:
                size *= 2
            best = min(best, size)
            power35 *= 5
        power3 *= 3
    return best


def _shaped_noise(rng: np.random.Generator, n: int, sample_rate: int, shape) -> np.ndarray:
    """Gaussian noise of ``n`` samples, unit RMS, whose magnitude spectrum is ``shape(freq_hz)``."""
    size = _fast_length(n)
    freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
    spectrum = rng.standard_normal((freqs.size, 2)).view(np.complex128)[:, 0] * shape(freqs)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, size)[:n]
    rms = np.sqrt(np.mean(noise**2))
    return noise / rms if rms > 0 else noise


_PULSE_TABLE_SIZE = 8192


def _rosenberg_tables(open_quotient: float, speed_quotient: float) -> tuple[np.ndarray, np.ndarray]:
    """One period of the Rosenberg (1971) glottal flow and its derivative, tabulated.

    The flow rises as a half cosine for ``open_quotient * sq / (1 + sq)`` of the
    period, falls as a quarter cosine for ``open_quotient / (1 + sq)`` and is
    zero (closed glottis) for the rest. A small open quotient with a large
    speed quotient gives the abrupt closure of pressed voice (strong high
    harmonics); a large one the gradual, symmetric pulse of breathy voice.
    """
    t_open = open_quotient * speed_quotient / (1.0 + speed_quotient)
    t_close = open_quotient / (1.0 + speed_quotient)
    p = np.arange(_PULSE_TABLE_SIZE) / _PULSE_TABLE_SIZE
    rising = p < t_open
    closing = ~rising & (p < t_open + t_close)
    flow = np.zeros_like(p)
    derivative = np.zeros_like(p)
    flow[rising] = 0.5 * (1.0 - pm.cos(np.pi * p[rising] / t_open))
    derivative[rising] = (0.5 * np.pi / t_open) * pm.sin(np.pi * p[rising] / t_open)
    fall = 0.5 * np.pi * (p[closing] - t_open) / t_close
    flow[closing] = pm.cos(fall)
    derivative[closing] = -(0.5 * np.pi / t_close) * pm.sin(fall)
    return flow, derivative


def _log_gaussian(freqs: np.ndarray, centre: float, octaves: float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        distance = pm.log2(np.maximum(freqs, 1.0) / centre)
    return pm.exp(-0.5 * (distance / octaves) ** 2)


def _formant_filter(
    source: np.ndarray,
    formants: np.ndarray,
    bandwidths: np.ndarray,
    shelf: np.ndarray,
    rate: int,
    upsample: int,
) -> np.ndarray:
    """Filter ``source`` (at ``rate``) through a cascade of time-varying two-pole resonators.

    ``formants``/``bandwidths`` (Hz) have one row per overlap-add frame (frame
    ``i`` is centred on sample ``i * _HOP``); each row's all-pole response, unit
    gain at DC and times the fixed ``shelf``, is applied to a Hann-windowed
    frame in the frequency domain, and the frames are overlap-added (Hann at
    50 % overlap sums to one). The inverse transforms are ``upsample`` times
    longer, so the output comes out band-limited-interpolated to
    ``rate * upsample``, ``source.size * upsample`` samples long.
    """
    n = source.size
    n_frames = formants.shape[0]
    padded = np.zeros((n_frames + 1) * _HOP + _FRAME)
    padded[_HOP : _HOP + n] = source
    window = 0.5 - 0.5 * pm.cos(2.0 * np.pi * np.arange(_FRAME) / _FRAME)  # periodic Hann
    frames = np.lib.stride_tricks.sliding_window_view(padded, _FRAME)[::_HOP][:n_frames] * window

    # Denominator polynomial of the resonator cascade, one row per frame.
    radius = pm.exp(-np.pi * bandwidths / rate)
    a1 = -2.0 * radius * pm.cos(2.0 * np.pi * formants / rate)
    a2 = radius**2
    poly = np.ones((n_frames, 1))
    for k in range(formants.shape[1]):
        grown = np.zeros((n_frames, poly.shape[1] + 2))
        grown[:, :-2] += poly
        grown[:, 1:-1] += poly * a1[:, k : k + 1]
        grown[:, 2:] += poly * a2[:, k : k + 1]
        poly = grown
    gain = shelf * upsample  # irfft's 1/n normalisation grows with the upsampled length
    gain[-1] = 0.0  # no energy at the voice rate's Nyquist frequency
    hop = _HOP * upsample
    blocks = _NFFT // _HOP
    summed = np.zeros((n_frames + blocks, hop))
    # A few frames at a time: small temporaries stay in cache and in the heap.
    for first in range(0, n_frames, _FRAMES_PER_CHUNK):
        last = min(first + _FRAMES_PER_CHUNK, n_frames)
        chunk_poly = poly[first:last]
        spectrum = np.fft.rfft(frames[first:last], _NFFT) / np.fft.rfft(chunk_poly, _NFFT)
        spectrum *= chunk_poly.sum(axis=1, keepdims=True) * gain
        # irfft zero-pads the spectrum up to the longer length: band-limited upsampling.
        out = np.fft.irfft(spectrum, _NFFT * upsample)
        for j in range(blocks):
            summed[first + j : last + j] += out[:, j * hop : (j + 1) * hop]
    return summed.reshape(-1)[hop : hop + n * upsample]


@dataclass
class _Plan:
    """Where things happen in one utterance: breakpoints (seconds, value) of every track."""

    formant_times: list[float]
    formant_values: list[tuple[float, float, float]]
    voicing: list[tuple[float, float]]
    aspiration: list[tuple[float, float]]
    noise: dict[str, list[tuple[float, float]]]
    accents: list[tuple[float, float, float]]  # centre, width (s), stress


def _plan_utterance(syllables, bounds: np.ndarray, speech_s: float, rng: np.random.Generator,
                    consonant_scale: float) -> _Plan:
    """Lay the syllables out in time: onset consonant, vowel nucleus, coda (``consonant_scale`` of their share)."""
    ramp = consonant_scale * min(0.015, 0.1 * speech_s / len(syllables))  # shorter consonants, shorter ramps
    silent = [(0.0, 0.0), (float(bounds[0]), 0.0)]  # nothing before the utterance starts
    plan = _Plan([], [], list(silent), list(silent), {kind: list(silent) for kind in NOISE_KINDS}, [])
    for index, syl in enumerate(syllables):
        start, end = bounds[index], bounds[index + 1]
        dur = end - start
        loud = float(pm.exp10((2.0 * syl.stress - 1.5 + rng.normal(0.0, 0.5)) / 20.0))
        if index == len(syllables) - 1:
            loud *= 0.8
        onset = CONSONANTS[syl.onset] if syl.onset else None
        coda = CONSONANTS[syl.coda] if syl.coda else None
        v0 = start + (onset.share * consonant_scale * dur if onset else 0.0)  # share * 1.0 is share, bit for bit
        v1 = end - (coda.share * consonant_scale * dur if coda else 0.0)
        if onset:
            plan.formant_times.append(start)
            plan.formant_values.append(onset.locus)
            plan.voicing += [(start + ramp, onset.voicing * loud), (v0 - ramp, onset.voicing * loud)]
            if onset.noise == "burst":  # closure, release burst, then aspiration (VOT)
                release = start + 0.6 * (v0 - start)
                burst = min(0.012, 0.3 * (v0 - release))
                plan.noise["burst"] += [(release - 1e-4, 0.0), (release, 0.9 * loud), (release + burst, 0.0)]
                if onset.aspirated:
                    plan.aspiration += [
                        (release + burst, 0.0),
                        (release + 2 * burst, 0.5 * loud),
                        (v0, 0.2 * loud),
                        (v0 + ramp, 0.0),
                    ]
            elif onset.noise is not None:
                level = (0.55 if onset.noise == "sibilant" else 0.12) * loud
                plan.noise[onset.noise] += [(start, 0.0), (start + ramp, level), (v0 - ramp, level), (v0, 0.0)]
        else:
            plan.voicing.append((start, 0.0))
        plan.formant_times += [v0 + 0.15 * (v1 - v0), v1 - 0.15 * (v1 - v0)]
        plan.formant_values += [VOWELS[syl.vowel[0]], VOWELS[syl.vowel[1]]]
        plan.voicing += [(v0 + ramp, loud), (v1 - ramp, loud * 0.85)]
        if coda:
            plan.formant_times.append(end)
            plan.formant_values.append(coda.locus)
            plan.voicing += [(v1 + ramp, coda.voicing * loud), (end - ramp, coda.voicing * loud * 0.5)]
            if coda.noise is not None:
                plan.noise[coda.noise] += [(v1, 0.0), (v1 + ramp, 0.4 * loud), (end - ramp, 0.3 * loud), (end, 0.0)]
        plan.voicing.append((end, 0.0 if coda or index == len(syllables) - 1 else 0.3 * loud))
        plan.accents.append((0.5 * (v0 + v1), 0.35 * dur, syl.stress))
    return plan


def _envelope(points: list[tuple[float, float]], times: np.ndarray) -> np.ndarray:
    """Piecewise-linear track through breakpoints (in any order), zero after the last."""
    points = sorted(points, key=lambda p: p[0])
    return np.interp(times, [p[0] for p in points], [p[1] for p in points], right=0.0)


def _f0_track(
    voice: Voice,
    style: Style,
    plan: _Plan,
    bounds: np.ndarray,
    duration: float,
    times: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """F0 in Hz at ``times``: level, declination, accents, final rise/fall, drift, tremor."""
    grid = np.arange(0.0, duration + 0.0025, 0.0025)  # built at 400 Hz, then interpolated
    t0, t1 = bounds[0], bounds[-1]
    progress = np.clip((grid - t0) / (t1 - t0), 0.0, 1.0)
    semitones = style.f0_st + rng.normal(0.0, 0.4) + (NEUTRAL_SLOPE_ST + style.slope_st) * (progress - 0.5)
    range_st = NEUTRAL_RANGE_ST * voice.range_factor * float(pm.exp2(style.range_log2))
    for centre, width, stress in plan.accents:
        bump = pm.exp(-0.5 * ((grid - centre) / width) ** 2)
        semitones = semitones + range_st * stress * rng.uniform(0.8, 1.2) * bump
    final = np.clip((grid - bounds[-2]) / (t1 - bounds[-2]), 0.0, 1.0)
    semitones = semitones + style.final_st * final**2
    for _ in range(3):  # slow wander
        semitones = semitones + 0.25 * pm.sin(2 * np.pi * rng.uniform(0.7, 2.5) * grid + rng.uniform(0, 2 * np.pi))
    semitones = semitones + _tremor(style, grid, rng)
    return np.interp(times, grid, np.clip(voice.f0 * pm.exp2(semitones / 12.0), 50.0, 600.0))


def _tremor(style: Style, grid: np.ndarray, rng: np.random.Generator) -> np.ndarray | float:
    """The emotion's pitch tremor in semitones, spoken or sung; without one, no random numbers are drawn."""
    if style.tremor_st <= 0:
        return 0.0
    return style.tremor_st * pm.sin(2 * np.pi * rng.uniform(4.5, 7.0) * grid + rng.uniform(0, 2 * np.pi))


def _melody_track(
    voice: Voice,
    style: Style,
    emotion: int,
    melody,
    bounds: np.ndarray,
    duration: float,
    times: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Sung F0 in Hz at ``times``: one held note per syllable with short glides, vibrato, the emotion's cues."""
    grid = np.arange(0.0, duration + 0.0025, 0.0025)  # built at 400 Hz, then interpolated
    scale = MINOR_SCALE if emotion in MINOR_EMOTIONS else MAJOR_SCALE
    notes = [scale[degree] for degree, _ in melody]
    glide = SONG_GLIDE_S
    note_times = [t for start, end in zip(bounds[:-1], bounds[1:]) for t in (start + glide, end - glide)]
    note_values = [note for note in notes for _ in range(2)]
    # The emotion's range widens or narrows the sung intervals a little; the tune stays recognisable.
    interval_scale = float(pm.exp2(0.3 * style.range_log2))
    t0, t1 = bounds[0], bounds[-1]
    progress = np.clip((grid - t0) / (t1 - t0), 0.0, 1.0)
    semitones = style.f0_st + rng.normal(0.0, 0.4) + style.slope_st * (progress - 0.5)
    semitones = semitones + interval_scale * np.interp(grid, note_times, note_values)
    final = np.clip((grid - bounds[-2]) / (t1 - bounds[-2]), 0.0, 1.0)
    semitones = semitones + 0.5 * style.final_st * final**2
    vibrato = pm.sin(2 * np.pi * rng.uniform(5.0, 6.5) * grid + rng.uniform(0, 2 * np.pi))
    semitones = semitones + rng.uniform(0.25, 0.45) * vibrato
    semitones = semitones + 0.1 * pm.sin(2 * np.pi * rng.uniform(0.5, 1.5) * grid + rng.uniform(0, 2 * np.pi))
    semitones = semitones + _tremor(style, grid, rng)
    return np.interp(times, grid, np.clip(voice.f0 * pm.exp2(semitones / 12.0), 50.0, 800.0))


def _glottal_source(
    f0: np.ndarray,
    rate: int,
    voice: Voice,
    style: Style,
    plan: _Plan,
    times: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Excitation at ``rate``: jittered, shimmered Rosenberg pulses plus aspiration.

    Returns the source, the mask of clearly voiced samples and the breathiness.
    """
    # Jitter: each glottal cycle gets its own small F0 perturbation.
    phase = np.cumsum(f0) / rate
    jitter = max(voice.jitter + style.jitter, 0.0)
    cycle_jitter = rng.normal(0.0, jitter, int(phase[-1]) + 2)
    phase = np.cumsum(f0 * (1.0 + cycle_jitter[phase.astype(np.int64)])) / rate
    cycle = phase.astype(np.int64)
    n_cycles = int(cycle[-1]) + 1
    # Shimmer, and creak (alternate cycles weakened, increasingly towards the end).
    cycle_amp = pm.exp(rng.normal(0.0, max(voice.shimmer + style.shimmer, 0.0), n_cycles))
    if style.creak > 0:
        creak = np.minimum(style.creak * (0.3 + 0.7 * np.arange(n_cycles) / n_cycles), 0.8)
        cycle_amp *= 1.0 - creak * (np.arange(n_cycles) % 2)
    # Pulse shape: breathy voice opens longer and closes gently, pressed voice the reverse.
    oq = float(np.clip(voice.oq + style.oq, 0.3, 0.9))
    speed = float(np.clip(2.0 + 5.0 * (0.62 - oq), 1.2, 4.5))
    flow_table, derivative_table = _rosenberg_tables(oq, speed)
    position = ((phase - cycle) * _PULSE_TABLE_SIZE).astype(np.intp)
    voicing = _envelope(plan.voicing, times)
    voiced = derivative_table[position] * cycle_amp[cycle] * voicing
    active = voicing > 0.2
    source_rms = np.sqrt(np.mean(voiced[active] ** 2)) if active.any() else 1.0
    # Aspiration: turbulence modulated by the glottal flow, and the VOT of aspirated stops.
    breath = max(voice.breath + style.breath, 0.005)
    noise = rng.standard_normal(times.size)
    aspiration = breath * (0.35 + 0.65 * flow_table[position]) * voicing + 0.6 * _envelope(plan.aspiration, times)
    return voiced + source_rms * noise * aspiration, active, breath


def _vocal_tract(
    source: np.ndarray,
    rate: int,
    upsample: int,
    voice: Voice,
    style: Style,
    plan: _Plan,
    breath: float,
) -> np.ndarray:
    """Formant trajectories from the plan, scaled to the actor's vocal tract; filter and upsample."""
    frame_times = np.arange(-(-source.size // _HOP) + 1) * _HOP / rate
    order = np.argsort(plan.formant_times, kind="stable")
    key_times = np.asarray(plan.formant_times)[order]
    key_values = np.asarray(plan.formant_values)[order]
    scale = voice.vtl_scale * np.array([pm.exp(style.f1_log), pm.exp(style.f2_log), 1.0])
    formants = np.empty((frame_times.size, 5))
    for k in range(3):
        formants[:, k] = np.interp(frame_times, key_times, key_values[:, k]) * scale[k]
    formants[:, 3] = voice.f4
    formants[:, 4] = voice.f5
    formants = np.minimum(formants, 0.45 * rate)
    bandwidths = np.array([70.0, 100.0, 140.0, 220.0, 300.0]) * voice.bandwidth_factor
    bandwidths = np.broadcast_to(bandwidths, formants.shape).copy()
    bandwidths[:, 0] += 120.0 * breath  # glottal losses widen F1
    freqs = np.fft.rfftfreq(_NFFT, 1.0 / rate)
    tilt = BASE_TILT_DB + voice.tilt_db + style.tilt_db
    shelf = pm.exp10(tilt * 0.5 * pm.log2(1.0 + (freqs / 500.0) ** 2) / 20.0)
    return _formant_filter(source, formants, bandwidths, shelf, rate, upsample)


def render_clip(clip: ClipName, seed: int, clip_seconds: float, sr: int) -> np.ndarray:
    """Render one (checked) clip: float32 mono samples in [-1, 1] at ``sr``.

    Speech and song share the voice, the emotion style and the phonetics; a song clip is sung to its statement's
    melody (held notes, vibrato), about a sixth longer, and its random stream has a tag of its own, so adding song
    changes no speech clip.
    """
    _keep_large_arrays_in_heap()
    song = clip.vocal_channel == 2

    voice = actor_voice(seed, clip.actor)
    strength = (1.0 if clip.intensity == 1 else STRONG) * voice.expressiveness
    style = actor_style(seed, clip.actor, clip.emotion).scaled(strength)
    codes = [seed, clip.actor, clip.emotion, clip.intensity, clip.statement, clip.repetition]
    rng = np.random.default_rng(codes + [SONG_TAG] if song else codes)

    # Timing: tempo sets the speech length; near-silence before and after.
    tempo = float(pm.exp2(style.tempo_log2 + voice.tempo_log2 + rng.normal(0.0, 0.03)))
    repetition_factor = 1.03 if clip.repetition == 1 else 0.97
    # Speech takes ~2/3 of the clip; the coefficients make the corpus mean ~clip_seconds.
    speech_s = 0.64 * clip_seconds * repetition_factor / tempo
    if song:
        speech_s *= SONG_LENGTH_FACTOR
    silence_s = 0.32 * clip_seconds * rng.uniform(0.85, 1.15)
    lead_s = silence_s * rng.uniform(0.45, 0.6)
    n = int(round((speech_s + silence_s) * sr))
    duration = n / sr
    syllables = STATEMENT_SYLLABLES[clip.statement]
    if song:  # the melody's note lengths, kept in time
        melody = SONG_MELODIES[clip.statement]
        weights = np.array([beats for _, beats in melody]) * rng.uniform(0.97, 1.03, len(syllables))
    else:
        weights = np.array([s.weight for s in syllables]) * rng.uniform(0.88, 1.12, len(syllables))
    bounds = lead_s + speech_s * np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
    plan = _plan_utterance(syllables, bounds, speech_s, rng, SONG_CONSONANT_SCALE if song else 1.0)

    # Voiced path at the voice rate (half the output rate when that is >= 32 kHz).
    upsample = 2 if sr % 2 == 0 and sr >= 32_000 else 1
    rate = sr // upsample
    voice_times = np.arange(-(-n // upsample)) / rate
    if song:
        f0 = _melody_track(voice, style, clip.emotion, melody, bounds, duration, voice_times, rng)
    else:
        f0 = _f0_track(voice, style, plan, bounds, duration, voice_times, rng)
    source, active, breath = _glottal_source(f0, rate, voice, style, plan, voice_times, rng)
    speech = _vocal_tract(source, rate, upsample, voice, style, plan, breath)
    speech_rms = np.sqrt(np.mean(speech[::upsample][active] ** 2)) if active.any() else 1.0
    speech = speech[:n]

    # Frication and bursts: shaped noise at the output rate, made only where it sounds.
    times = np.arange(n) / sr
    centre_scale = math.sqrt(voice.vtl_scale)
    for kind in NOISE_KINDS:
        env = _envelope(plan.noise[kind], times)
        sounding = np.flatnonzero(env > 0.0)
        if sounding.size:
            centre, octaves = NOISE_SHAPES[kind]
            noise = _shaped_noise(
                rng, sounding.size, sr, lambda f, c=centre * centre_scale, w=octaves: _log_gaussian(f, c, w)
            )
            speech[sounding] += speech_rms * env[sounding] * noise

    # Loudness (RMS over the utterance), room noise, headroom.
    level_db = _REFERENCE_LEVEL_DB + voice.level_db + style.level_db + rng.normal(0.0, 0.7)
    if song:
        level_db += SONG_LEVEL_DB
    in_speech = (times >= bounds[0]) & (times <= bounds[-1])
    audio = speech * (float(pm.exp10(level_db / 20.0)) / np.sqrt(np.mean(speech[in_speech] ** 2)))
    # Room noise: white at the voice rate, held for ``upsample`` samples (so it tilts down).
    room = np.repeat(rng.standard_normal(voice_times.size), upsample)[:n]
    audio += float(pm.exp10(voice.noise_floor_db / 20.0)) * room
    peak = np.max(np.abs(audio))
    if peak > _PEAK_LIMIT:  # rare: the loudest strong-anger clips
        audio *= _PEAK_LIMIT / peak
    return audio.astype(np.float32)


_heap_warmed = False


def _keep_large_arrays_in_heap() -> None:
    """Make glibc keep this module's few-megabyte temporaries in the heap.

    glibc serves large allocations with mmap and unmaps them on free, until a
    large mmapped block is freed: then it raises its mmap threshold (up to 32
    MiB) and trim threshold to match. Without that, every clip pays page
    faults for fresh memory again (expensive in VMs; ~40 % of the run time).
    Freeing one 31 MiB block raises the thresholds once per process, the
    same thing glibc does on its own in a long-running program. No effect
    on other allocators.
    """
    global _heap_warmed
    if not _heap_warmed:
        block = np.empty(31 * 2**20 // 8)
        del block
        _heap_warmed = True
