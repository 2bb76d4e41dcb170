import numpy as np
import pytest
import soundfile as sf

from conftest import tone, write_wav
from ravdess_ser.atomic import TEMP_PREFIX
from ravdess_ser.audio import (ResampleConfig, read_audio, read_notes_report, read_skip_report, resample,
                               resample_actor)
from ravdess_ser.errors import PipelineError

NAME = "03-01-05-01-01-01-01"


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT"])
def test_every_wav_width_reads_as_float32_mono(tmp_path, subtype):
    path = write_wav(tmp_path / "a.wav", tone(0.2, 48_000), subtype=subtype)
    samples, rate = read_audio(path)
    assert rate == 48_000 and samples.dtype == np.float32 and samples.ndim == 1
    tolerance = 1e-2 if subtype == "PCM_U8" else 1e-4
    np.testing.assert_allclose(samples, tone(0.2, 48_000), atol=tolerance)


def test_stereo_is_downmixed_by_averaging(tmp_path):
    stereo = tone(0.2, 48_000, channels=2)
    samples, _ = read_audio(write_wav(tmp_path / "s.wav", stereo, subtype="FLOAT"))
    np.testing.assert_allclose(samples, stereo.mean(axis=1), atol=1e-7)


@pytest.mark.parametrize("content, message", [(b"", "not a readable audio file"), (b"hello, not audio" * 8, "not a readable audio file")])
def test_non_audio_and_empty_files_are_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with pytest.raises(PipelineError, match=message) as caught:
        read_audio(path)
    assert str(path) in str(caught.value)


def test_wav_with_zero_samples_is_an_error(tmp_path):
    path = write_wav(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(PipelineError, match="no samples"):
        read_audio(path)


def test_nan_samples_are_an_error(tmp_path):
    samples = tone(0.1, 16_000)
    samples[10] = np.nan
    with pytest.raises(PipelineError, match="NaN or infinite"):
        read_audio(write_wav(tmp_path / "nan.wav", samples, 16_000, subtype="FLOAT"))


@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100, 48_000, 96_000])
def test_resample_to_16k_keeps_duration_and_the_tone(rate):
    out = resample(tone(1.0, rate, frequency=440.0), rate, ResampleConfig())
    assert out.shape[0] == 16_000
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 Hz bins at 16 kHz over 1 s


def test_resampling_filter_removes_content_above_the_new_nyquist():
    t = np.arange(48_000) / 48_000
    alias_bait = np.sin(2 * np.pi * 12_000 * t).astype(np.float32)  # would alias to 4 kHz
    out = resample(alias_bait, 48_000, ResampleConfig())
    assert np.abs(out[1000:-1000]).max() < 1e-3


def test_resample_actor_handles_a_messy_folder(tmp_path):
    raw = tmp_path / "raw" / "Actor_01"
    write_wav(raw / f"{NAME}.wav", tone(0.5, 48_000))
    write_wav(raw / "03-01-05-01-01-02-01.WAV", tone(0.5, 44_100, channels=2), 44_100, "PCM_24")
    write_wav(raw / "03-01-05-01-02-01-01.wav", tone(0.5, 48_000), subtype="FLOAT")
    (raw / "notes.txt").write_text("stray")
    (raw / "03-01-05-02-01-01-01.wav").write_bytes(b"")
    out = tmp_path / "16k" / "Actor_01"
    written = resample_actor(raw, out, ResampleConfig(), progress=False)
    assert sorted(p.name for p in written) == sorted(
        [f"{NAME}.wav", "03-01-05-01-01-02-01.wav", "03-01-05-01-02-01-01.wav"]
    )
    for path in written:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16_000, 1, "PCM_16")
        assert abs(info.frames - 8_000) <= 1
    skipped = dict(read_skip_report(out))
    assert skipped == {"notes.txt": "not a .wav file", "03-01-05-02-01-01-01.wav": skipped["03-01-05-02-01-01-01.wav"]}
    assert "not a readable audio file" in skipped["03-01-05-02-01-01-01.wav"]
    assert not list(out.glob(TEMP_PREFIX + "*"))


def test_resample_actor_reports_case_duplicates(tmp_path):
    raw = tmp_path / "Actor_01"
    write_wav(raw / f"{NAME}.WAV", tone(0.2, 48_000))
    write_wav(raw / f"{NAME}.wav", tone(0.2, 48_000))
    resample_actor(raw, tmp_path / "out", ResampleConfig(), progress=False)
    assert [reason for _, reason in read_skip_report(tmp_path / "out")] == [f"duplicate of {NAME}.WAV"]


def test_missing_actor_folder_is_an_error(tmp_path):
    with pytest.raises(PipelineError, match="actor folder does not exist"):
        resample_actor(tmp_path / "Actor_09", tmp_path / "out", ResampleConfig(), progress=False)


def test_a_float_wav_above_full_scale_is_scaled_to_fit_and_the_gain_recorded(tmp_path, caplog):
    raw = tmp_path / "raw" / "Actor_01"
    loud = 100.0 * tone(0.5, 48_000)  # peak 50
    write_wav(raw / f"{NAME}.wav", loud, subtype="FLOAT")
    out = tmp_path / "16k" / "Actor_01"
    with caplog.at_level("WARNING"):
        (written,) = resample_actor(raw, out, ResampleConfig(), progress=False)
    resampled = resample(loud, 48_000, ResampleConfig())
    gain = (32767 / 32768) / np.abs(resampled).max()
    note = f"scaled by {20 * np.log10(gain):.1f} dB: float peak 50 above full scale"
    assert note == "scaled by -34.0 dB: float peak 50 above full scale"
    assert read_notes_report(out) == {f"{NAME}.wav": note}
    assert f"kept {written}: {note}" in caplog.text
    pcm, _ = sf.read(written, dtype="int16")
    assert np.abs(pcm.astype(np.int32)).max() == 32767  # at full scale, never beyond it
    np.testing.assert_array_equal(pcm, np.rint(resampled * gain * 32768))  # the shape kept: nothing clipped
    assert read_skip_report(out) == []


def test_the_resamplers_overshoot_of_a_full_scale_wav_clips_and_says_how_many_samples(tmp_path):
    raw = tmp_path / "raw" / "Actor_01"
    t = np.arange(24_000) / 48_000
    square = np.where(np.sin(2 * np.pi * 220 * t) >= 0, 32767, -32768).astype(np.int16)  # full-scale 16-bit
    path = raw / f"{NAME}.wav"
    path.parent.mkdir(parents=True)
    sf.write(path, square, 48_000, subtype="PCM_16")
    resampled = resample(read_audio(path)[0], 48_000, ResampleConfig())
    pcm = np.rint(resampled * 32768)
    expected = int(np.count_nonzero((pcm > 32767) | (pcm < -32768)))
    assert expected > 100  # Gibbs ringing of every edge
    out = tmp_path / "16k" / "Actor_01"
    (written,) = resample_actor(raw, out, ResampleConfig(), progress=False)
    assert read_notes_report(out) == {f"{NAME}.wav": f"{expected} samples clipped at full scale"}
    assert sf.info(written).frames == 8_000  # kept


def _claim_twice_the_data(path):
    data = bytearray(path.read_bytes())
    chunk = data.index(b"data")
    size = int.from_bytes(data[chunk + 4:chunk + 8], "little")
    data[chunk + 4:chunk + 8] = (2 * size).to_bytes(4, "little")
    path.write_bytes(bytes(data))


def test_a_wav_whose_header_claims_more_data_than_the_file_holds_is_kept_with_a_note(tmp_path):
    raw = tmp_path / "raw" / "Actor_01"
    path = write_wav(raw / f"{NAME}.wav", tone(1.0, 48_000))
    _claim_twice_the_data(path)
    assert sf.info(path).frames == 48_000  # libsndfile reads what is there, and says nothing
    out = tmp_path / "16k" / "Actor_01"
    (written,) = resample_actor(raw, out, ResampleConfig(), progress=False)
    assert read_notes_report(out) == {
        f"{NAME}.wav": "truncated: the WAV header declares 2.00 s of audio, the file holds 1.00 s; kept what it holds"}
    assert sf.info(written).frames == 16_000


def test_clips_within_full_scale_and_with_honest_headers_get_no_note(tmp_path):
    raw = tmp_path / "raw" / "Actor_01"
    write_wav(raw / f"{NAME}.wav", tone(0.5, 48_000), subtype="FLOAT")
    write_wav(raw / "03-01-05-01-01-02-01.wav", tone(0.5, 44_100, channels=2), 44_100, "PCM_24")
    out = tmp_path / "16k" / "Actor_01"
    resample_actor(raw, out, ResampleConfig(), progress=False)
    assert read_notes_report(out) == {} and (out / "notes.tsv").read_text() == "file\tnote\n"


@pytest.mark.parametrize("orig_rate", [48_000, 32_000, 44_100, 8_000])
def test_the_fast_decimation_gives_torchaudios_bits(orig_rate):
    import torch

    from ravdess_ser.audio import _resampler

    config = ResampleConfig()
    samples = np.round(tone(0.7, orig_rate).astype(np.float64) * 32768) / 32768  # 16-bit PCM values
    with torch.no_grad():
        reference = _resampler(orig_rate, config)(torch.from_numpy(samples)).numpy()
    assert np.array_equal(resample(samples, orig_rate, config), reference)
