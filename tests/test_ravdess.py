from collections import Counter

import pytest

from ravdess_ser.errors import PipelineError
from ravdess_ser.ravdess import actor_gender, clip_names, parse_clip_name, song_clip_names, speech_clip_names


def test_parse_valid_name_gives_every_label():
    clip = parse_clip_name("data/raw/Actor_12/03-01-06-02-01-02-12.wav")
    assert (clip.modality, clip.vocal_channel, clip.emotion, clip.intensity) == (3, 1, 6, 2)
    assert (clip.statement, clip.repetition, clip.actor) == (1, 2, 12)
    assert clip.emotion_name == "fearful" and clip.gender == "female" and clip.subset == "speech"
    assert clip.filename == "03-01-06-02-01-02-12.wav"


def test_upper_case_extension_is_accepted():
    assert parse_clip_name("03-01-01-01-01-01-01.WAV").actor == 1


@pytest.mark.parametrize(
    "name, message",
    [
        ("03-01-01-01-01-01.wav", "RAVDESS convention"),  # six fields
        ("03-01-01-01-01-01-01-01.wav", "RAVDESS convention"),  # eight fields
        ("03-01-09-01-01-01-01.wav", "emotion code 09 is out of range"),
        ("03-01-01-01-01-01-25.wav", "actor code 25 is out of range"),
        ("04-01-01-01-01-01-01.wav", "modality code 04"),
        ("03-03-01-01-01-01-01.wav", "vocal channel code 03"),
        ("03-01-01-02-01-01-01.wav", r"neutral \(emotion 01\) has no strong intensity"),
        ("03-02-07-01-01-01-01.wav", r"song \(vocal channel 02\) has no disgust \(emotion 07\)"),
        ("03-02-08-02-01-01-01.wav", r"song \(vocal channel 02\) has no surprised \(emotion 08\)"),
        ("03-01-1-01-01-01-01.wav", "RAVDESS convention"),
        ("notes.txt", "not a .wav file"),
    ],
)
def test_bad_names_are_rejected_with_the_file_named(name, message):
    with pytest.raises(PipelineError, match=message) as caught:
        parse_clip_name(f"Actor_01/{name}")
    assert name in str(caught.value)


def test_each_actor_has_sixty_speech_clips_in_ravdess_proportions():
    clips = speech_clip_names(7)
    assert len(clips) == len({clip.stem for clip in clips}) == 60
    counts = Counter(clip.emotion_name for clip in clips)
    assert counts["neutral"] == 4 and all(counts[e] == 8 for e in counts if e != "neutral")
    assert actor_gender(7) == "male" and actor_gender(8) == "female"


def test_song_has_44_clips_per_actor_of_23_and_six_emotions():
    assert sum(len(song_clip_names(actor)) for actor in range(1, 25)) == 1012
    assert song_clip_names(18) == []
    clips = song_clip_names(7)
    assert len(clips) == len({clip.stem for clip in clips}) == 44
    assert {clip.vocal_channel for clip in clips} == {2} and {clip.subset for clip in clips} == {"song"}
    counts = Counter(clip.emotion for clip in clips)
    assert counts == {1: 4, 2: 8, 3: 8, 4: 8, 5: 8, 6: 8}
    assert all(parse_clip_name(clip.filename) == clip for clip in clips)
    assert parse_clip_name("03-02-06-02-02-02-24.wav").subset == "song"


def test_clip_names_of_both_subsets_are_sorted_speech_then_song():
    both = clip_names(3, ("song", "speech"))
    assert both == speech_clip_names(3) + song_clip_names(3)
    assert clip_names(18, ("speech", "song")) == speech_clip_names(18) and clip_names(3) == speech_clip_names(3)
