"""Tests for ravdess_ser.download against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from http_server import FileServer, refused_port, silent_port
from ravdess_ser import download
from ravdess_ser.corpus import Archive, DataConfig
from ravdess_ser.download import (
    download_file,
    extract_ravdess_zips,
    file_md5,
    prepare_corpus,
    prepare_ravdess_from_zips,
)
from ravdess_ser.errors import PipelineError
from ravdess_ser.ravdess import song_clip_names, speech_clip_names

CHUNK = 16 * 1024


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    """Retry after 20 ms instead of 0.5 s, so the retry tests stay fast."""
    monkeypatch.setattr(download, "RETRY_BACKOFF_SECONDS", 0.02)


@pytest.fixture
def server():
    with FileServer() as running:
        yield running


@pytest.fixture
def payload() -> bytes:
    return np.random.default_rng(0).bytes(200_000)


# --------------------------------------------------------------------------- download


def test_full_download_verifies_md5_and_shows_progress(server, payload, tmp_path, capfd):
    url = server.add("/data.zip", payload)
    dest = tmp_path / "out" / "data.zip"

    assert download_file(url, dest, md5_hex(payload), chunk_size=CHUNK) == dest

    assert dest.read_bytes() == payload
    assert not (tmp_path / "out" / "data.zip.part").exists()
    assert [r.range for r in server.requests] == [None]
    err = capfd.readouterr().err
    assert "data.zip" in err and "100%" in err and "195k" in err  # 200000 B = 195.3 KiB


def test_valid_dest_is_not_downloaded_again(server, payload, tmp_path):
    url = server.add("/data.zip", payload)
    dest = tmp_path / "data.zip"
    dest.write_bytes(payload)

    download_file(url, dest, md5_hex(payload), progress=False)

    assert server.requests == []


def test_dest_with_wrong_md5_is_replaced(server, payload, tmp_path):
    url = server.add("/data.zip", payload)
    dest = tmp_path / "data.zip"
    dest.write_bytes(b"stale")

    download_file(url, dest, md5_hex(payload), progress=False)

    assert dest.read_bytes() == payload


def test_resumes_after_connection_is_cut(server, payload, tmp_path, capfd):
    half = len(payload) // 2
    url = server.add("/data.zip", payload, cut_after=half)
    dest = tmp_path / "data.zip"

    download_file(url, dest, md5_hex(payload), chunk_size=CHUNK)

    assert dest.read_bytes() == payload
    assert [r.range for r in server.requests] == [None, f"bytes={half}-"]
    assert f"resuming at byte {half}" in capfd.readouterr().err


def test_resumes_from_existing_part_file(server, payload, tmp_path):
    url = server.add("/data.zip", payload)
    dest = tmp_path / "data.zip"
    (tmp_path / "data.zip.part").write_bytes(payload[:12_345])

    download_file(url, dest, md5_hex(payload), progress=False)

    assert dest.read_bytes() == payload
    assert [r.range for r in server.requests] == ["bytes=12345-"]


def test_restarts_when_server_ignores_range(server, payload, tmp_path):
    url = server.add("/data.zip", payload, honor_range=False, cut_after=50_000)
    dest = tmp_path / "data.zip"

    download_file(url, dest, md5_hex(payload), progress=False, chunk_size=CHUNK)

    assert dest.read_bytes() == payload
    assert [r.range for r in server.requests] == [None, "bytes=50000-"]


def test_complete_part_file_gets_416_and_is_verified(server, payload, tmp_path):
    url = server.add("/data.zip", payload)
    dest = tmp_path / "data.zip"
    (tmp_path / "data.zip.part").write_bytes(payload)

    download_file(url, dest, md5_hex(payload), progress=False)

    assert dest.read_bytes() == payload
    assert [r.range for r in server.requests] == [f"bytes={len(payload)}-"]


def test_part_file_bigger_than_file_starts_over(server, payload, tmp_path):
    url = server.add("/data.zip", payload)
    dest = tmp_path / "data.zip"
    (tmp_path / "data.zip.part").write_bytes(payload + b"junk")

    download_file(url, dest, md5_hex(payload), progress=False)

    assert dest.read_bytes() == payload
    assert [r.range for r in server.requests] == [f"bytes={len(payload) + 4}-", None]


def test_stale_part_from_another_file_is_redownloaded_once(server, payload, tmp_path):
    url = server.add("/data.zip", payload)
    dest = tmp_path / "data.zip"
    (tmp_path / "data.zip.part").write_bytes(b"x" * 1000)  # same size as a prefix, wrong bytes

    download_file(url, dest, md5_hex(payload), progress=False)

    assert dest.read_bytes() == payload
    assert [r.range for r in server.requests] == ["bytes=1000-", None]


def test_checksum_mismatch_raises_and_leaves_nothing(server, payload, tmp_path):
    url = server.add("/data.zip", payload)
    dest = tmp_path / "data.zip"
    wrong = "0" * 32

    with pytest.raises(PipelineError) as info:
        download_file(url, dest, wrong, progress=False)

    message = str(info.value)
    assert wrong in message and md5_hex(payload) in message and url in message and "data.zip" in message
    assert list(tmp_path.iterdir()) == []


def test_no_network_connection_refused(tmp_path):
    sock = refused_port()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/Audio_Speech_Actors_01-24.zip"
        with pytest.raises(PipelineError) as info:
            download_file(url, tmp_path / "a.zip", "0" * 32, progress=False)
    finally:
        sock.close()
    message = str(info.value)
    assert "cannot reach" in message and url in message and "refused" in message.lower()
    assert "data.source=zip" in message and "data.zip_path=" in message and "synthetic" in message
    assert "\n" not in message


def test_no_answer_before_timeout(tmp_path):
    sock = silent_port()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/a.zip"
        with pytest.raises(PipelineError) as info:
            download_file(url, tmp_path / "a.zip", "0" * 32, progress=False, timeout=0.3)
    finally:
        sock.close()
    assert "cannot reach" in str(info.value) and "synthetic" in str(info.value)


def test_http_404(server, tmp_path):
    url = server.url("/missing.zip")
    with pytest.raises(PipelineError) as info:
        download_file(url, tmp_path / "a.zip", "0" * 32, progress=False)
    assert url in str(info.value) and "404" in str(info.value)
    assert len(server.requests) == 1  # not retried
    assert list(tmp_path.iterdir()) == []


def test_http_500_is_retried(server, payload, tmp_path):
    url = server.add("/data.zip", payload, error_status=500, error_requests=1)
    dest = tmp_path / "data.zip"

    download_file(url, dest, md5_hex(payload), progress=False)

    assert dest.read_bytes() == payload
    assert len(server.requests) == 2


def test_http_500_after_retries(server, payload, tmp_path):
    url = server.add("/data.zip", payload, error_status=500)
    with pytest.raises(PipelineError) as info:
        download_file(url, tmp_path / "a.zip", md5_hex(payload), progress=False, max_retries=1)
    assert url in str(info.value) and "500" in str(info.value)
    assert len(server.requests) == 2


def test_gives_up_after_max_retries_and_keeps_part(server, payload, tmp_path):
    url = server.add("/data.zip", payload, cut_after=10_000, cut_requests=99)
    dest = tmp_path / "data.zip"

    with pytest.raises(PipelineError) as info:
        download_file(url, dest, md5_hex(payload), progress=False, max_retries=1, chunk_size=CHUNK)

    assert "after 1 retries" in str(info.value) and "resume" in str(info.value)
    assert not dest.exists()
    assert (tmp_path / "data.zip.part").read_bytes() == payload[:20_000]
    # the next run resumes where this one stopped
    server.files["/data.zip"].cut_after = None
    download_file(url, dest, md5_hex(payload), progress=False)
    assert dest.read_bytes() == payload
    assert server.requests[-1].range == "bytes=20000-"


# --------------------------------------------------------------------------- extraction


def wav_bytes(seed: int) -> bytes:
    samples = np.random.default_rng(seed).uniform(-0.5, 0.5, 4800).astype(np.float32)  # 0.1 s
    buffer = io.BytesIO()
    sf.write(buffer, samples, 48_000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def ravdess_members(actors=(1, 2), clips=2, prefix="", subset="speech") -> dict[str, bytes]:
    names = speech_clip_names if subset == "speech" else song_clip_names
    members = {}
    for actor in actors:
        for index, clip in enumerate(names(actor)[:clips]):
            members[f"{prefix}Actor_{actor:02d}/{clip.filename}"] = wav_bytes(actor * 100 + index + 50 * (subset == "song"))
    return members


def write_zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".tmp-")]


def test_extract_plain_layout(tmp_path):
    members = ravdess_members()
    zip_path = write_zip(tmp_path / "r.zip", members)
    raw = tmp_path / "raw"

    files = extract_ravdess_zips({"speech": zip_path}, raw, [1, 2])

    assert tree(raw) == members
    assert files == sorted(raw / name for name in members)
    data, rate = sf.read(files[0])
    assert rate == 48_000 and len(data) == 4800


def test_extract_only_requested_actors_with_extra_top_folder(tmp_path):
    members = ravdess_members(actors=(1, 2, 3), prefix="Audio_Speech_Actors_01-24/")
    zip_path = write_zip(tmp_path / "r.zip", members)
    raw = tmp_path / "raw"

    extract_ravdess_zips({"speech": zip_path}, raw, [3, 1])

    expected = {k.split("/", 1)[1]: v for k, v in members.items() if "Actor_02" not in k}
    assert tree(raw) == expected


def test_extract_skips_macos_junk(tmp_path):
    members = ravdess_members()
    name = next(iter(members)).split("/")[1]
    junk = {
        f"__MACOSX/Actor_01/._{name}": b"\x00\x05\x16\x07",
        "__MACOSX/._Actor_01": b"\x00\x05\x16\x07",
        ".DS_Store": b"Bud1",
        "Actor_01/.DS_Store": b"Bud1",
        f"Actor_01/._{name}": b"\x00\x05\x16\x07",
    }
    zip_path = write_zip(tmp_path / "mac.zip", {**members, **junk})
    raw = tmp_path / "raw"

    extract_ravdess_zips({"speech": zip_path}, raw, [1, 2])

    assert tree(raw) == members


def test_extract_replaces_existing_raw_dir(tmp_path):
    raw = tmp_path / "raw"
    (raw / "Actor_09").mkdir(parents=True)
    (raw / "Actor_09" / "old.wav").write_bytes(b"old")
    members = ravdess_members()

    extract_ravdess_zips({"speech": write_zip(tmp_path / "r.zip", members)}, raw, [1, 2])

    assert tree(raw) == members
    assert leftovers(tmp_path) == []


def test_truncated_zip(tmp_path):
    full = write_zip(tmp_path / "full.zip", ravdess_members()).read_bytes()
    zip_path = tmp_path / "half.zip"
    zip_path.write_bytes(full[: len(full) // 2])

    with pytest.raises(PipelineError) as info:
        extract_ravdess_zips({"speech": zip_path}, tmp_path / "raw", [1, 2])

    message = str(info.value)
    assert str(zip_path) in message and "truncated or corrupt" in message and "download again" in message
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("actors", [[1, 2], [1]], ids=["corrupt-requested", "corrupt-not-requested"])
def test_crc_failure_leaves_existing_raw_dir_untouched(tmp_path, actors):
    members = ravdess_members()
    zip_path = write_zip(tmp_path / "r.zip", members, compression=zipfile.ZIP_STORED)
    data = bytearray(zip_path.read_bytes())
    last = list(members.values())[-1]
    offset = bytes(data).rindex(last[-200:])
    data[offset + 100] ^= 0xFF  # flip a byte inside the last member's (Actor_02) stored data
    zip_path.write_bytes(bytes(data))
    raw = tmp_path / "raw"
    (raw / "Actor_01").mkdir(parents=True)
    (raw / "Actor_01" / "keep.wav").write_bytes(b"previous run")

    with pytest.raises(PipelineError) as info:
        extract_ravdess_zips({"speech": zip_path}, raw, actors)

    assert "CRC" in str(info.value) and list(members)[-1] in str(info.value)
    assert tree(raw) == {"Actor_01/keep.wav": b"previous run"}
    assert leftovers(tmp_path) == []


def test_interrupted_extraction_leaves_no_partial_raw_dir(tmp_path, monkeypatch):
    zip_path = write_zip(tmp_path / "r.zip", ravdess_members())
    raw = tmp_path / "raw"
    real_copy = shutil.copyfileobj
    calls = []

    def copy_then_interrupt(*args, **kwargs):  # Ctrl-C during the second file
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_copy(*args, **kwargs)

    monkeypatch.setattr(shutil, "copyfileobj", copy_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        extract_ravdess_zips({"speech": zip_path}, raw, [1, 2])

    assert len(calls) == 2
    assert not raw.exists()
    assert leftovers(tmp_path) == []


def test_layout_not_ravdess(tmp_path):
    zip_path = write_zip(tmp_path / "other.zip", {"clips/a.wav": wav_bytes(1), "README.txt": b"hi"})

    with pytest.raises(PipelineError) as info:
        extract_ravdess_zips({"speech": zip_path}, tmp_path / "raw", [1])

    message = str(info.value)
    assert str(zip_path) in message and "Actor_01" in message and "'clips/'" in message and "README.txt" in message
    assert not (tmp_path / "raw").exists()


def test_actor_folders_under_different_parents(tmp_path):
    members = {**ravdess_members(actors=(1,), prefix="a/"), **ravdess_members(actors=(2,), prefix="b/")}
    zip_path = write_zip(tmp_path / "mixed.zip", members)

    with pytest.raises(PipelineError) as info:
        extract_ravdess_zips({"speech": zip_path}, tmp_path / "raw", [1, 2])

    assert "different parents" in str(info.value) and "a/" in str(info.value) and "b/" in str(info.value)


def test_requested_actor_missing(tmp_path):
    zip_path = write_zip(tmp_path / "r.zip", ravdess_members(actors=(1, 2)))

    with pytest.raises(PipelineError) as info:
        extract_ravdess_zips({"speech": zip_path}, tmp_path / "raw", [1, 2, 7, 24])

    message = str(info.value)
    assert str(zip_path) in message and "Actor_07" in message and "Actor_24" in message
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("bad_name", ["../evil.wav", "Actor_01/../../evil.wav", "/etc/evil.wav"])
def test_unsafe_member_is_rejected(tmp_path, bad_name):
    zip_path = write_zip(tmp_path / "r.zip", {**ravdess_members(), bad_name: b"x"})
    raw = tmp_path / "deep" / "raw"

    with pytest.raises(PipelineError) as info:
        extract_ravdess_zips({"speech": zip_path}, raw, [1, 2])

    assert "unsafe" in str(info.value) and bad_name in str(info.value)
    assert not (tmp_path / "evil.wav").exists() and not (tmp_path / "deep").exists()


# --------------------------------------------------------------------------- local zip


def test_prepare_from_zip(tmp_path):
    members = ravdess_members()
    zip_path = write_zip(tmp_path / "r.zip", members)

    files = prepare_ravdess_from_zips([Archive("speech", "", file_md5(zip_path), zip_path)], tmp_path / "raw", [2])

    assert [f.relative_to(tmp_path / "raw").as_posix() for f in files] == sorted(
        k for k in members if k.startswith("Actor_02/")
    )


def test_prepare_from_zip_md5_mismatch(tmp_path):
    zip_path = write_zip(tmp_path / "r.zip", ravdess_members())
    actual = md5_hex(zip_path.read_bytes())

    with pytest.raises(PipelineError) as info:
        prepare_ravdess_from_zips([Archive("speech", "", "f" * 32, zip_path)], tmp_path / "raw", [1])

    message = str(info.value)
    assert str(zip_path) in message and "f" * 32 in message and actual in message and "data.md5" in message
    assert not (tmp_path / "raw").exists()


def test_prepare_from_missing_zip(tmp_path):
    with pytest.raises(PipelineError) as info:
        prepare_ravdess_from_zips([Archive("speech", "", "0" * 32, tmp_path / "nope.zip")], tmp_path / "raw", [1])
    assert str(tmp_path / "nope.zip") in str(info.value) and "not found" in str(info.value)


def test_download_then_extract(server, tmp_path):
    members = ravdess_members(prefix="Audio_Speech_Actors_01-24/")
    data = write_zip(tmp_path / "src.zip", members).read_bytes()
    url = server.add("/files/Audio_Speech_Actors_01-24.zip", data, cut_after=len(data) // 3)
    zip_path = download_file(url, tmp_path / "dl" / "Audio_Speech_Actors_01-24.zip", md5_hex(data), progress=False)

    files = prepare_ravdess_from_zips([Archive("speech", "", md5_hex(data), zip_path)], tmp_path / "raw", [1, 2])

    assert len(files) == 4 and all(os.path.getsize(f) > 9000 for f in files)


# --------------------------------------------------------------------------- speech and song


def song_config(tmp_path, **fields) -> DataConfig:
    """Both subsets, actors 17 and 18 (who has no song), zips under tmp_path/dl."""
    return DataConfig(**{"actors": ("17", "18"), "subsets": ("speech", "song"),
                         "zip_path": str(tmp_path / "dl" / "Audio_Speech_Actors_01-24.zip"),
                         "song_zip_path": str(tmp_path / "dl" / "Audio_Song_Actors_01-24.zip"), **fields})


@pytest.fixture
def both_zips(tmp_path):
    """The zips' bytes and members, laid out as RAVDESS's: a top folder each, no Actor_18 in the song zip."""
    speech = ravdess_members(actors=(17, 18), clips=3, prefix="Audio_Speech_Actors_01-24/")
    song = ravdess_members(actors=(17,), clips=3, prefix="Audio_Song_Actors_01-24/", subset="song")
    return {name: (write_zip(tmp_path / f"{name}-src.zip", members).read_bytes(), members)
            for name, members in (("speech", speech), ("song", song))}


def extracted(members: dict[str, bytes]) -> dict[str, bytes]:
    return {name.split("/", 1)[1]: data for name, data in members.items()}


def test_song_zip_is_downloaded_beside_speech_resumed_and_extracted_into_the_same_folders(server, both_zips,
                                                                                          tmp_path, capfd):
    (speech, speech_members), (song, song_members) = both_zips["speech"], both_zips["song"]
    cut = len(song) // 3
    config = song_config(tmp_path, source="ravdess",
                         url=server.add("/files/Audio_Speech_Actors_01-24.zip", speech), md5=md5_hex(speech),
                         song_url=server.add("/files/Audio_Song_Actors_01-24.zip", song, cut_after=cut),
                         song_md5=md5_hex(song))
    raw = tmp_path / "raw"

    prepare_corpus(config, raw)

    assert tree(raw) == {**extracted(speech_members), **extracted(song_members)}
    assert sorted(p.name[:5] for p in (raw / "Actor_17").iterdir()) == ["03-01"] * 3 + ["03-02"] * 3
    assert all(p.name.startswith("03-01-") for p in (raw / "Actor_18").iterdir())  # no song for actor 18
    assert [(r.path, r.range) for r in server.requests] == [
        ("/files/Audio_Speech_Actors_01-24.zip", None),
        ("/files/Audio_Song_Actors_01-24.zip", None),
        ("/files/Audio_Song_Actors_01-24.zip", f"bytes={cut}-"),
    ]
    err = capfd.readouterr().err
    assert "Audio_Speech_Actors_01-24.zip" in err and "Audio_Song_Actors_01-24.zip" in err and "100%" in err
    assert f"resuming at byte {cut}" in err
    assert (tmp_path / "dl" / "Audio_Song_Actors_01-24.zip").read_bytes() == song

    server.requests.clear()
    prepare_corpus(config, raw)  # both zips are there with the right MD5s: nothing is downloaded again
    assert server.requests == []


def test_song_zip_checksum_failure_names_its_param_and_leaves_no_song_zip(server, both_zips, tmp_path):
    (speech, _), (song, _) = both_zips["speech"], both_zips["song"]
    song_url = server.add("/files/Audio_Song_Actors_01-24.zip", song)
    config = song_config(tmp_path, source="ravdess", url=server.add("/files/speech.zip", speech),
                         md5=md5_hex(speech), song_url=song_url, song_md5="0" * 32)

    with pytest.raises(PipelineError) as info:
        prepare_corpus(config, tmp_path / "raw", progress=False)

    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'dl' / 'Audio_Song_Actors_01-24.zip'}: MD5 mismatch")
    assert song_url in message and md5_hex(song) in message and f"set data.song_md5 to {md5_hex(song)}" in message
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["Audio_Speech_Actors_01-24.zip"]
    assert not (tmp_path / "raw").exists()


def test_unreachable_song_url_points_to_the_song_zip_param(tmp_path, both_zips, server):
    speech, _ = both_zips["speech"]
    blocker = refused_port()
    try:
        config = song_config(tmp_path, source="ravdess", url=server.add("/s.zip", speech), md5=md5_hex(speech),
                             song_url=f"http://127.0.0.1:{blocker.getsockname()[1]}/song.zip")
        with pytest.raises(PipelineError) as info:
            prepare_corpus(config, tmp_path / "raw", progress=False)
    finally:
        blocker.close()
    assert "cannot reach" in str(info.value)
    assert "-S data.song_zip_path=/path/to/Audio_Song_Actors_01-24.zip" in str(info.value)


def test_source_zip_takes_both_local_zips(tmp_path, both_zips):
    (speech, speech_members), (song, song_members) = both_zips["speech"], both_zips["song"]
    config = song_config(tmp_path, source="zip", md5=md5_hex(speech), song_md5=md5_hex(song))
    (tmp_path / "dl").mkdir()
    Path(config.zip_path).write_bytes(speech)
    Path(config.song_zip_path).write_bytes(song)

    prepare_corpus(config, tmp_path / "raw")

    assert tree(tmp_path / "raw") == {**extracted(speech_members), **extracted(song_members)}


def test_speech_only_reads_no_song_zip(tmp_path, both_zips):
    speech, speech_members = both_zips["speech"]
    config = song_config(tmp_path, source="zip", subsets=("speech",), md5=md5_hex(speech))
    (tmp_path / "dl").mkdir()
    Path(config.zip_path).write_bytes(speech)  # no song zip anywhere

    prepare_corpus(config, tmp_path / "raw")

    assert tree(tmp_path / "raw") == extracted(speech_members)


def test_missing_local_song_zip_names_its_param(tmp_path, both_zips):
    speech, _ = both_zips["speech"]
    config = song_config(tmp_path, source="zip", md5=md5_hex(speech))
    (tmp_path / "dl").mkdir()
    Path(config.zip_path).write_bytes(speech)

    with pytest.raises(PipelineError) as info:
        prepare_corpus(config, tmp_path / "raw")

    assert str(info.value) == (f"{config.song_zip_path}: zip archive not found; check data.song_zip_path, or use "
                               "data.source=ravdess to download it or data.source=synthetic to run offline")


def test_local_song_zip_md5_mismatch_names_its_param(tmp_path, both_zips):
    (speech, _), (song, _) = both_zips["speech"], both_zips["song"]
    config = song_config(tmp_path, source="zip", md5=md5_hex(speech))  # song_md5: the real song zip's
    (tmp_path / "dl").mkdir()
    Path(config.zip_path).write_bytes(speech)
    Path(config.song_zip_path).write_bytes(song)

    with pytest.raises(PipelineError) as info:
        prepare_corpus(config, tmp_path / "raw")

    assert "not the RAVDESS song zip" in str(info.value) and f"-S data.song_md5={md5_hex(song)}" in str(info.value)
    assert not (tmp_path / "raw").exists()


def test_song_zip_may_lack_actor_18_only(tmp_path):
    speech = write_zip(tmp_path / "speech.zip", ravdess_members(actors=(3, 18)))
    song = write_zip(tmp_path / "song.zip", ravdess_members(actors=(18,), subset="speech"))  # no Actor_03

    with pytest.raises(PipelineError) as info:
        extract_ravdess_zips({"speech": speech, "song": song}, tmp_path / "raw", [3, 18])

    assert str(info.value).startswith(f"{song}: requested actors missing from the zip archive: Actor_03 ")
    assert "use the complete RAVDESS song archive" in str(info.value)
    assert not (tmp_path / "raw").exists()


def test_a_file_in_both_zips_is_refused(tmp_path):
    members = ravdess_members()
    speech = write_zip(tmp_path / "speech.zip", members)
    song = write_zip(tmp_path / "song.zip", members)

    with pytest.raises(PipelineError) as info:
        extract_ravdess_zips({"speech": speech, "song": song}, tmp_path / "raw", [1, 2])

    first = next(iter(members))
    assert str(info.value) == (f"{song}: member {first!r} would overwrite {first}, "
                               f"already extracted from {first!r} of {speech}")
    assert not (tmp_path / "raw").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("subsets, shown", [
    ((), "[]"), (("speech", "speech"), "['speech', 'speech']"), (("sung",), "['sung']"), ("song", "'song'"),
])
def test_data_subsets_must_be_speech_and_song_at_most_once(subsets, shown):
    with pytest.raises(PipelineError) as info:
        DataConfig(subsets=subsets)
    assert str(info.value) == (f"data.subsets={shown}: must be a list of speech and song, each at most once: "
                               "[speech] or [speech, song]")


def test_archives_follow_data_subsets():
    assert [a.subset for a in DataConfig().archives()] == ["speech"]
    song_first = DataConfig(subsets=["song", "speech"])
    assert song_first.subsets == ("song", "speech")
    assert [(a.subset, a.key("md5")) for a in song_first.archives()] == [("speech", "data.md5"),
                                                                         ("song", "data.song_md5")]
    with pytest.raises(PipelineError, match=r"^data.song_md5='abc': must be 32 hexadecimal digits"):
        DataConfig(song_md5="abc")


# --------------------------------------------------------------------------- zip bombs


def _declare_sizes(path: Path, sizes: dict[str, int]) -> None:
    """Rewrite the uncompressed sizes the zip's central directory declares for some members."""
    data = bytearray(path.read_bytes())
    end = data.rindex(b"PK\x05\x06")
    entries = int.from_bytes(data[end + 10:end + 12], "little")
    offset = int.from_bytes(data[end + 16:end + 20], "little")
    for _ in range(entries):
        assert data[offset:offset + 4] == b"PK\x01\x02"
        name_length, extra_length, comment_length = (int.from_bytes(data[offset + i:offset + i + 2], "little")
                                                     for i in (28, 30, 32))
        name = data[offset + 46:offset + 46 + name_length].decode()
        if name in sizes:
            data[offset + 24:offset + 28] = sizes[name].to_bytes(4, "little")
        offset += 46 + name_length + extra_length + comment_length
    path.write_bytes(bytes(data))


def _assert_refused_before_writing(tmp_path, zip_path, *fragments):
    raw = tmp_path / "raw"
    with pytest.raises(PipelineError) as info:
        extract_ravdess_zips({"speech": zip_path}, raw, [1, 2])
    message = str(info.value)
    assert message.startswith(f"{zip_path}: member ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message
    assert not raw.exists() and leftovers(tmp_path) == []


def test_a_member_that_inflates_beyond_any_clip_is_refused_before_anything_is_written(tmp_path):
    members = ravdess_members()
    bomb = next(iter(members))
    members[bomb] = bytes(80 << 20)  # 80 MiB of zeros: about 80 kB deflated
    zip_path = write_zip(tmp_path / "bomb.zip", members)
    assert zip_path.stat().st_size < 1 << 20
    _assert_refused_before_writing(tmp_path, zip_path, f"member {bomb!r} inflates to 80.0 MiB, beyond the 64.0 MiB "
                                   "limit for one file; refusing to extract (not a RAVDESS archive, or a zip bomb)")


def test_a_member_whose_header_declares_2_gib_is_refused_from_the_header(tmp_path):
    members = ravdess_members()
    bomb = list(members)[1]
    zip_path = write_zip(tmp_path / "bomb.zip", members)
    _declare_sizes(zip_path, {bomb: 2 << 30})
    assert zipfile.ZipFile(zip_path).getinfo(bomb).file_size == 2 << 30
    _assert_refused_before_writing(tmp_path, zip_path, f"member {bomb!r} inflates to 2.0 GiB, beyond the 64.0 MiB limit")


def test_a_member_that_inflates_a_thousandfold_is_refused(tmp_path):
    members = ravdess_members()
    bomb = list(members)[2]
    members[bomb] = bytes(4 << 20)  # 4 MiB of zeros: no recording compresses like that
    zip_path = write_zip(tmp_path / "bomb.zip", members)
    ratio = (4 << 20) // zipfile.ZipFile(zip_path).getinfo(bomb).compress_size
    assert ratio > 500
    _assert_refused_before_writing(tmp_path, zip_path, f"member {bomb!r} inflates {ratio}-fold",
                                   "beyond the 100-fold limit for audio")


def test_an_archive_that_inflates_beyond_any_corpus_is_refused(tmp_path):
    random = np.random.default_rng(1)
    members = {f"Actor_01/03-01-01-01-01-{index:02d}-01.wav": random.bytes(700 << 10) for index in range(66)}
    zip_path = write_zip(tmp_path / "big.zip", members, compression=zipfile.ZIP_STORED)
    _declare_sizes(zip_path, {name: 63 << 20 for name in members})  # each within the limits, 4.06 GiB in all
    _assert_refused_before_writing(tmp_path, zip_path, "'Actor_01/03-01-01-01-01-65-01.wav' takes the archive to "
                                   "4.1 GiB uncompressed, beyond the 4.0 GiB limit for the whole archive")


def test_a_silent_clip_compresses_well_and_is_still_extracted(tmp_path):
    members = ravdess_members()
    silent = io.BytesIO()
    sf.write(silent, np.zeros(48_000 * 4, dtype=np.float32), 48_000, format="WAV", subtype="PCM_16")
    members[list(members)[0]] = silent.getvalue()  # 4 s of digital silence: 375 KiB, deflated a thousandfold
    extract_ravdess_zips({"speech": write_zip(tmp_path / "r.zip", members)}, tmp_path / "raw", [1, 2])
    assert tree(tmp_path / "raw") == members
