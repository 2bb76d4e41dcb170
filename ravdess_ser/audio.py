"""Reading, checking, resampling and writing WAV audio.

WAV I/O goes through ``soundfile`` (libsndfile): torchaudio 2.9+ only reads
files through torchcodec, which this project does not depend on. Resampling
uses torchaudio's windowed-sinc resampler with its filter settings given
explicitly (see :class:`ResampleConfig`), so they are part of the pipeline's
params rather than a library default that could change under us.
"""

from __future__ import annotations

import csv
import functools
import logging
import math
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ravdess_ser.params import check_choice, check_param, convert_params, param, positive
from ravdess_ser.atomic import atomic_path, remove_stale_temporaries
from ravdess_ser.errors import PipelineError

log = logging.getLogger(__name__)

SKIP_REPORT = "skipped.tsv"
NOTES_REPORT = "notes.tsv"  # clips kept, with what was done to them or is wrong with them
METHODS = ("sinc_interp_kaiser", "sinc_interp_hann")
SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")


@dataclass(frozen=True)
class ResampleConfig:
    """Target format and torchaudio resampling filter.

    The defaults are the "kaiser_best" settings (a 64-zero-crossing sinc with a
    Kaiser window, beta 14.77, cut-off at 94.76% of the lower Nyquist rate).
    """

    sample_rate: int = param(16_000, "output sample rate in Hz (wav2vec2 expects 16000)")
    method: str = param("sinc_interp_kaiser", "torchaudio resampling method: sinc_interp_kaiser or sinc_interp_hann")
    lowpass_filter_width: int = param(64, "zero crossings of the sinc filter on each side (sharper with more)")
    rolloff: float = param(0.9475937167399596, "filter cut-off as a fraction of the lower Nyquist frequency")
    beta: float = param(14.769656459379492, "Kaiser window shape (sinc_interp_kaiser only)")
    subtype: str = param("PCM_16", "soundfile subtype of the written WAVs: PCM_16, PCM_24 or FLOAT")

    def __post_init__(self):
        convert_params(self, "resample")
        check_param("resample.sample_rate", self.sample_rate, self.sample_rate > 0, "a positive number of Hz")
        check_choice("resample.method", self.method, METHODS)
        check_param("resample.lowpass_filter_width", self.lowpass_filter_width, self.lowpass_filter_width >= 1,
                    "a positive integer")
        check_param("resample.rolloff", self.rolloff, positive(self.rolloff) and self.rolloff <= 1,
                    "above 0 and at most 1")
        check_param("resample.beta", self.beta, positive(self.beta) or self.beta == 0, "a number, 0 or more")
        check_choice("resample.subtype", self.subtype, SUBTYPES)


def is_wav(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".wav" and not path.name.startswith(".")


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a WAV file as float32 mono, downmixing multi-channel audio by averaging.

    Any PCM width (8/16/24/32-bit) and float WAV are accepted. Raises
    :class:`PipelineError` naming the file if it is not readable audio, is
    empty, or holds NaN/inf samples.
    """
    path = Path(path)
    try:
        samples, sample_rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        raise PipelineError(f"not a readable audio file ({error})", path) from None
    if samples.shape[0] == 0:
        raise PipelineError("audio file has no samples", path)
    if not np.isfinite(samples).all():
        raise PipelineError("audio contains NaN or infinite samples", path)
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32), int(sample_rate)


# The sinc filter's taps are rounded to multiples of 2**-28. Then, for PCM input of up to 24 bits, every product and
# partial sum of the convolution is a multiple of 2**-51 below 2**2, which float64 holds exactly: the result is the
# same whatever order a CPU's SIMD kernels add in, so the 16 kHz PCM is bit-identical on every CPU class. The
# rounding moves each tap by at most 2**-29, far below 16-bit (or 24-bit) resolution.
_KERNEL_STEP = 2.0**-28
PCM_SCALE = {"PCM_16": 2.0**15, "PCM_24": 2.0**23}


def write_audio(path: str | Path, samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> int:
    """Write mono audio atomically; integer formats are quantised here (clipped, never wrapped), not by libsndfile.

    Full scale is the one ``read_audio`` uses (PCM value / 2**(bits-1)), so reading and writing keeps the gain.
    Returns how many samples were clipped at full scale.
    """
    clipped = 0
    if subtype in PCM_SCALE:
        scale = PCM_SCALE[subtype]
        pcm = np.rint(np.asarray(samples, dtype=np.float64) * scale)
        clipped = int(np.count_nonzero((pcm < -scale) | (pcm > scale - 1)))
        pcm = np.clip(pcm, -scale, scale - 1)
        # soundfile writes int32 to PCM_24 as its top 24 bits.
        data = pcm.astype(np.int16) if subtype == "PCM_16" else pcm.astype(np.int32) * 256
    else:
        data = np.asarray(samples, dtype=np.float32)
    with atomic_path(path) as tmp:
        sf.write(tmp, data, sample_rate, subtype=subtype, format="WAV")
    return clipped


def fit_full_scale(samples: np.ndarray, input_peak: float, subtype: str) -> tuple[np.ndarray, str | None]:
    """Audio from a float input above full scale, scaled down so that its PCM does not clip, and a note of the gain.

    The gain is taken from the resampled audio, so its overshoot fits too. Audio whose input was within full
    scale is never scaled (the resampler's overshoot of such input clips, and ``write_audio`` counts it).
    """
    if subtype not in PCM_SCALE or input_peak <= 1.0:
        return samples, None
    top = (PCM_SCALE[subtype] - 1) / PCM_SCALE[subtype]
    peak = float(np.abs(samples).max())
    if peak <= top:
        return samples, None
    gain = top / peak
    return samples * gain, f"scaled by {20 * math.log10(gain):.1f} dB: float peak {input_peak:.3g} above full scale"


def truncation_note(path: str | Path) -> str | None:
    """A note if the WAV header's data chunk claims more bytes than the file holds.

    libsndfile then reads what is there without a word: the clip is shorter than its header says, most likely
    a copy or download cut short.
    """
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        header = stream.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:] != b"WAVE":
            return None  # RF64, W64, AIFF ...: libsndfile's own checks only
        position, byte_rate = 12, 0
        while position + 8 <= size:
            stream.seek(position)
            chunk, length = struct.unpack("<4sI", stream.read(8))
            if chunk == b"fmt " and length >= 16:
                byte_rate = struct.unpack("<I", stream.read(16)[8:12])[0]
            elif chunk == b"data":
                held = size - position - 8
                if length <= held:
                    return None
                if not byte_rate:
                    return f"truncated: the WAV header declares {length} bytes of audio, the file holds {held}"
                return (f"truncated: the WAV header declares {length / byte_rate:.2f} s of audio, the file holds "
                        f"{held / byte_rate:.2f} s; kept what it holds")
            position += 8 + length + (length & 1)
    return None


@functools.lru_cache(maxsize=4)
def _resampler(orig_rate: int, config: ResampleConfig):
    import torch
    import torchaudio.transforms

    resampler = torchaudio.transforms.Resample(
        orig_rate, config.sample_rate, resampling_method=config.method,
        lowpass_filter_width=config.lowpass_filter_width, rolloff=config.rolloff, beta=config.beta, dtype=torch.float64,
    )
    resampler.kernel.copy_(torch.round(resampler.kernel / _KERNEL_STEP) * _KERNEL_STEP)
    return resampler


def _decimate(samples: np.ndarray, resampler) -> np.ndarray:
    """What torchaudio's resampler computes for a whole-number rate ratio (48 kHz to 16 kHz), 15 times faster.

    The strided convolution as one correlation per phase of the filter; the sums are exact (see above), so the
    bits are the same as torchaudio's own convolution (tested).
    """
    step = resampler.orig_freq // resampler.gcd
    taps = resampler.kernel[0, 0].numpy()
    padded = np.pad(samples, (resampler.width, resampler.width + step))
    frames = (padded.size - taps.size) // step + 1
    out = np.zeros(frames)
    for phase in range(step):
        out += np.correlate(padded[phase::step], taps[phase::step], mode="valid")[:frames]
    return out[: -(-samples.size // step)]


def resample(samples: np.ndarray, orig_rate: int, config: ResampleConfig) -> np.ndarray:
    """Resample with torchaudio's windowed sinc, in float64 with the taps rounded as above; returns float64."""
    samples = np.asarray(samples, dtype=np.float64)
    if orig_rate == config.sample_rate:
        return samples
    resampler = _resampler(orig_rate, config)
    if resampler.new_freq // resampler.gcd == 1:
        return _decimate(samples, resampler)
    import torch

    with torch.no_grad():
        return resampler(torch.from_numpy(samples)).numpy()


def write_skip_report(folder: Path, skipped: Sequence[tuple[str, str]], report: str = SKIP_REPORT,
                      column: str = "reason") -> None:
    """Record the files a stage left out, and why, next to its outputs (read by label-manifest)."""
    with atomic_path(folder / report) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["file", column])
        writer.writerows(sorted(skipped))


def read_skip_report(folder: Path, report: str = SKIP_REPORT, column: str = "reason") -> list[tuple[str, str]]:
    report = folder / report
    if not report.exists():
        return []
    with open(report, newline="") as handle:
        return [(row["file"], row[column]) for row in csv.DictReader(handle, delimiter="\t")]


def write_notes_report(folder: Path, notes: Sequence[tuple[str, str]]) -> None:
    """Record the clips kept with a note (scaled, clipped, truncated), next to the skip report."""
    write_skip_report(folder, notes, NOTES_REPORT, "note")


def read_notes_report(folder: Path) -> dict[str, str]:
    return dict(read_skip_report(folder, NOTES_REPORT, "note"))


def resample_actor(raw_dir: Path, out_dir: Path, config: ResampleConfig, progress: bool = True) -> list[Path]:
    """Convert every WAV in one actor folder to ``config.sample_rate`` mono.

    File names are kept, with the extension normalised to ``.wav``. Files that
    are not WAV, are unreadable or empty are skipped; each skip is logged and
    recorded in ``out_dir/skipped.tsv``. Clips kept but changed or suspect (a
    float input above full scale scaled down, samples clipped at full scale, a
    header that claims more audio than the file holds) are logged and recorded
    in ``out_dir/notes.tsv``. Returns the written paths.
    """
    from tqdm import tqdm

    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if not raw_dir.is_dir():
        raise PipelineError("actor folder does not exist", raw_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    entries = sorted(raw_dir.iterdir())
    wavs = [path for path in entries if is_wav(path)]
    skipped = [(path.name, "not a .wav file") for path in entries if not is_wav(path)]
    seen: dict[str, Path] = {}
    written, notes = [], []
    for path in tqdm(wavs, desc=f"resample {raw_dir.name}", unit="clip", disable=not progress):
        target = out_dir / (path.stem + ".wav")
        if target.name in seen:
            skipped.append((path.name, f"duplicate of {seen[target.name].name}"))
            continue
        seen[target.name] = path
        try:
            samples, rate = read_audio(path)
        except PipelineError as error:
            skipped.append((path.name, error.reason))
            continue
        peak = float(np.abs(samples).max())
        resampled, scaled = fit_full_scale(resample(samples, rate, config), peak, config.subtype)
        clipped = write_audio(target, resampled, config.sample_rate, config.subtype)
        clip_notes = [note for note in (truncation_note(path), scaled) if note]
        if clipped:
            clip_notes.append(f"{clipped} sample{'s' if clipped > 1 else ''} clipped at full scale")
        if clip_notes:
            notes.append((target.name, "; ".join(clip_notes)))
        written.append(target)
    for name, reason in skipped:
        log.warning("skipped %s: %s", raw_dir / name, reason)
    for name, note in notes:
        log.warning("kept %s: %s", out_dir / name, note)
    write_skip_report(out_dir, skipped)
    write_notes_report(out_dir, notes)
    return written


def resample_actor_job(raw_dir: str, out_dir: str, config: dict) -> int:
    """:func:`resample_actor` with JSON arguments and result, as the stage worker runs it."""
    return len(resample_actor(Path(raw_dir), Path(out_dir), ResampleConfig(**config)))
