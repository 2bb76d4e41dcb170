import numpy as np
import pytest

from conftest import tone, write_wav
from ravdess_ser.audio import ResampleConfig, resample_actor, write_skip_report
from ravdess_ser.errors import PipelineError
from ravdess_ser.manifest import EXCLUDED, OK, build_manifest, read_manifest, write_manifest


def _clip(root, actor_folder, name, seconds=0.5, frequency=220.0, embed=True):
    audio = write_wav(root / "16k" / actor_folder / name, tone(seconds, 16_000, frequency), 16_000)
    if embed:
        target = root / "emb" / actor_folder / (audio.stem + ".npy")
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, np.zeros((int(seconds * 50) - 1, 8), dtype=np.float32))
    return audio


def test_manifest_labels_good_clips_and_excludes_the_rest_with_reasons(tmp_path):
    _clip(tmp_path, "Actor_01", "03-01-05-02-01-01-01.wav", frequency=200)
    _clip(tmp_path, "Actor_01", "03-01-05-02-01-02-01.wav", frequency=200)  # identical audio to the first
    _clip(tmp_path, "Actor_01", "03-01-05-02-01-01.wav", frequency=210)  # six fields
    _clip(tmp_path, "Actor_01", "03-01-09-01-01-01-01.wav", frequency=220)  # emotion 09
    _clip(tmp_path, "Actor_01", "03-02-03-01-01-01-01.wav", frequency=230)  # song
    _clip(tmp_path, "Actor_01", "03-01-03-01-01-01-02.wav", frequency=240)  # actor 02 in Actor_01
    _clip(tmp_path, "Actor_02", "03-01-03-01-01-01-02.wav", frequency=250)
    _clip(tmp_path, "Actor_02", "03-01-04-01-01-01-02.wav", frequency=260, embed=False)
    write_skip_report(tmp_path / "16k" / "Actor_02", [("broken.wav", "not a readable audio file (x)")])
    write_skip_report(tmp_path / "emb" / "Actor_02", [("03-01-04-01-01-01-02.wav", "clip has 10 samples")])

    rows = build_manifest(tmp_path / "16k", tmp_path / "emb", [1, 2], tmp_path)
    by_name = {(row.audio_path or row.clip_id): row for row in rows}
    good = by_name["16k/Actor_01/03-01-05-02-01-01-01.wav"]
    assert (good.status, good.emotion_name, good.intensity, good.actor, good.gender) == (OK, "angry", 2, 1, "male")
    assert good.embedding_path == "emb/Actor_01/03-01-05-02-01-01-01.npy" and good.num_frames == 24
    assert good.duration_s == 0.5
    reasons = {name: row.reason for name, row in by_name.items() if row.status == EXCLUDED}
    assert reasons == {
        "16k/Actor_01/03-01-05-02-01-02-01.wav": "identical audio to 16k/Actor_01/03-01-05-02-01-01-01.wav",
        "16k/Actor_01/03-01-05-02-01-01.wav": reasons["16k/Actor_01/03-01-05-02-01-01.wav"],
        "16k/Actor_01/03-01-09-01-01-01-01.wav": reasons["16k/Actor_01/03-01-09-01-01-01-01.wav"],
        "16k/Actor_01/03-02-03-01-01-01-01.wav": "song clip (vocal channel 02); data.subsets is [speech]",
        "16k/Actor_01/03-01-03-01-01-01-02.wav": "actor code 02 disagrees with its folder Actor_01",
        "16k/Actor_02/03-01-04-01-01-01-02.wav": "embed: clip has 10 samples",
        "broken": "resample: not a readable audio file (x)",
    }
    assert "RAVDESS convention" in reasons["16k/Actor_01/03-01-05-02-01-01.wav"]
    assert "emotion code 09 is out of range" in reasons["16k/Actor_01/03-01-09-01-01-01-01.wav"]
    assert by_name["16k/Actor_02/03-01-03-01-01-01-02.wav"].status == OK

    write_manifest(rows, tmp_path / "manifest.csv")
    assert read_manifest(tmp_path / "manifest.csv") == rows


def test_duplicate_clip_ids_across_folders_are_excluded(tmp_path):
    _clip(tmp_path, "Actor_03", "03-01-02-01-01-01-03.wav", frequency=300)
    _clip(tmp_path, "Actor_03", "03-01-02-01-01-01-03.WAV", frequency=310)
    rows = build_manifest(tmp_path / "16k", tmp_path / "emb", [3], tmp_path)
    assert [row.status for row in rows] == [OK, EXCLUDED]
    assert rows[1].reason.startswith("duplicate clip id")


def test_a_manifest_with_no_usable_clip_is_not_written(tmp_path):
    _clip(tmp_path, "Actor_01", "03-02-03-01-01-01-01.wav")
    rows = build_manifest(tmp_path / "16k", tmp_path / "emb", [1], tmp_path)
    with pytest.raises(PipelineError, match="no usable clips"):
        write_manifest(rows, tmp_path / "manifest.csv")
    assert not (tmp_path / "manifest.csv").exists()


def test_missing_audio_folder_is_an_error(tmp_path):
    with pytest.raises(PipelineError, match="16 kHz audio folder is missing"):
        build_manifest(tmp_path / "16k", tmp_path / "emb", [4], tmp_path)


def test_what_resample_did_to_a_clip_it_kept_is_in_the_manifest(tmp_path):
    from test_audio import _claim_twice_the_data

    raw = tmp_path / "raw" / "Actor_01"
    write_wav(raw / "03-01-05-01-01-01-01.wav", 100.0 * tone(0.5, 48_000), 48_000, subtype="FLOAT")  # peak 50
    _claim_twice_the_data(write_wav(raw / "03-01-05-01-01-02-01.wav", tone(1.0, 48_000, frequency=300.0), 48_000))
    write_wav(raw / "03-01-05-01-02-01-01.wav", tone(0.5, 48_000, frequency=400.0), 48_000)
    for audio in resample_actor(raw, tmp_path / "16k" / "Actor_01", ResampleConfig(), progress=False):
        (tmp_path / "emb" / "Actor_01").mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / "emb" / "Actor_01" / (audio.stem + ".npy"), np.zeros((20, 8), dtype=np.float32))
    rows = build_manifest(tmp_path / "16k", tmp_path / "emb", [1], tmp_path)
    assert [(row.clip_id, row.status, row.audio_note) for row in rows] == [
        ("03-01-05-01-01-01-01", OK, "scaled by -34.0 dB: float peak 50 above full scale"),
        ("03-01-05-01-01-02-01", OK,
         "truncated: the WAV header declares 2.00 s of audio, the file holds 1.00 s; kept what it holds"),
        ("03-01-05-01-02-01-01", OK, ""),
    ]
    write_manifest(rows, tmp_path / "manifest.csv")
    assert "audio_note" in (tmp_path / "manifest.csv").read_text().splitlines()[0]
    assert read_manifest(tmp_path / "manifest.csv") == rows


def test_song_clips_are_used_when_data_subsets_has_song(tmp_path):
    _clip(tmp_path, "Actor_05", "03-01-03-01-01-01-05.wav", frequency=200)
    _clip(tmp_path, "Actor_05", "03-02-03-01-01-01-05.wav", frequency=210)
    _clip(tmp_path, "Actor_05", "03-02-07-01-01-01-05.wav", frequency=220)  # song has no disgust

    rows = build_manifest(tmp_path / "16k", tmp_path / "emb", [5], tmp_path, subsets=("speech", "song"))

    assert [(row.clip_id, row.vocal_channel, row.status) for row in rows] == [
        ("03-01-03-01-01-01-05", 1, OK), ("03-02-03-01-01-01-05", 2, OK), ("03-02-07-01-01-01-05", None, EXCLUDED)]
    assert "song (vocal channel 02) has no disgust" in rows[2].reason
    write_manifest(rows, tmp_path / "manifest.csv")
    assert read_manifest(tmp_path / "manifest.csv") == rows

    song_only = build_manifest(tmp_path / "16k", tmp_path / "emb", [5], tmp_path, subsets=("song",))
    assert [(row.status, row.reason) for row in song_only[:2]] == [
        (EXCLUDED, "speech clip (vocal channel 01); data.subsets is [song]"), (OK, "")]


def test_the_manifest_csv_keeps_its_columns_and_number_formats(tmp_path):
    _clip(tmp_path, "Actor_01", "03-01-05-02-01-01-01.wav", seconds=0.51234567)
    _clip(tmp_path, "Actor_01", "03-02-05-02-01-01-01.wav", frequency=300)
    rows = build_manifest(tmp_path / "16k", tmp_path / "emb", [1], tmp_path)
    rows[0].reason = 'a reason, with "quotes"'  # as a CSV writer must quote it
    rows[0].audio_note = "NA"  # text, not a missing value
    write_manifest(rows, tmp_path / "manifest.csv")

    assert (tmp_path / "manifest.csv").read_text() == (
        "clip_id,actor,gender,emotion,emotion_name,intensity,statement,repetition,modality,vocal_channel,audio_path,"
        "embedding_path,duration_s,num_frames,status,reason,audio_note\n"
        "03-01-05-02-01-01-01,1,male,5,angry,2,1,1,3,1,16k/Actor_01/03-01-05-02-01-01-01.wav,"
        'emb/Actor_01/03-01-05-02-01-01-01.npy,0.5123,24,ok,"a reason, with ""quotes""",NA\n'
        "03-02-05-02-01-01-01,1,male,5,angry,2,1,1,3,2,16k/Actor_01/03-02-05-02-01-01-01.wav,"
        "emb/Actor_01/03-02-05-02-01-01-01.npy,0.5,24,excluded,song clip (vocal channel 02); data.subsets is [speech],\n"
    )
    assert read_manifest(tmp_path / "manifest.csv") == rows


@pytest.mark.parametrize("content, message", [
    ("clip_id,actor\n", "manifest lacks columns: audio_note, audio_path"),
    ("", "not a readable manifest (No columns to parse from file)"),
])
def test_a_broken_manifest_is_one_line_naming_it(tmp_path, content, message):
    (tmp_path / "manifest.csv").write_text(content)
    with pytest.raises(PipelineError) as info:
        read_manifest(tmp_path / "manifest.csv")
    assert str(info.value).startswith(f"{tmp_path / 'manifest.csv'}: {message}") and "\n" not in str(info.value)


def test_a_manifest_with_text_in_a_number_column_is_refused(tmp_path):
    _clip(tmp_path, "Actor_01", "03-01-05-02-01-01-01.wav")
    write_manifest(build_manifest(tmp_path / "16k", tmp_path / "emb", [1], tmp_path), tmp_path / "manifest.csv")
    text = (tmp_path / "manifest.csv").read_text().replace(",0.5,24,", ",0.5,many,")
    (tmp_path / "manifest.csv").write_text(text)
    with pytest.raises(PipelineError) as info:
        read_manifest(tmp_path / "manifest.csv")
    assert str(info.value).startswith(f"{tmp_path / 'manifest.csv'}: not a readable manifest (")
    assert "many" in str(info.value) and "\n" not in str(info.value)
