"""The CPU runtimes (ravdess_ser/cpu_runtimes.py): which one each mode picks, per CPU class; that what runs is
checked against torch and recorded; the fall-back and the pinned runtimes' one-line errors; the ONNX cache."""

from __future__ import annotations

import functools
import json
import os
import pwd

import numpy as np
import pytest
import torch

from conftest import tone
from ravdess_ser.cpu_runtimes import (FAST_MIN_COSINE, ONNXRUNTIME_EXACT, ONNXRUNTIME_FAST, ONNXRUNTIME_SPLIT,
                                      OPENVINO_FAST, TORCH_EXACT, TORCH_FAST, describe, load_runtime,
                                      runtime_candidates)
from ravdess_ser.embed import EmbedConfig, SpeechEncoderEmbedder, embed_actor, hidden_layers
from ravdess_ser.errors import PipelineError

CLIP = tone(1.1, 16_000, 200.0) + 0.01 * np.random.default_rng(1).standard_normal(17_600).astype(np.float32)


@pytest.mark.parametrize("cpu, mode, expected", [
    ("AMX", "exact", [ONNXRUNTIME_EXACT, TORCH_EXACT]),
    ("AVX2", "exact", [ONNXRUNTIME_EXACT, TORCH_EXACT]),
    # OpenVINO's bfloat16 prepares kernels per new input length: slower than ONNX Runtime int8 on fresh lengths.
    ("AMX", "fast", [ONNXRUNTIME_SPLIT, ONNXRUNTIME_FAST, TORCH_FAST]),
    ("AVX512-BF16", "fast", [ONNXRUNTIME_SPLIT, ONNXRUNTIME_FAST, TORCH_FAST]),
    ("AVX2", "fast", [ONNXRUNTIME_FAST, TORCH_FAST]),
])
def test_auto_picks_onnx_runtime_by_mode_on_every_cpu_class_and_ends_in_torch(cpu, mode, expected):
    assert runtime_candidates("auto", mode, "cpu", cpu, feature_encoder=True) == expected


def test_a_pinned_runtime_is_the_only_candidate_and_cuda_runs_torch():
    assert runtime_candidates("onnxruntime", "fast", "cpu", "AVX2") == [ONNXRUNTIME_FAST]
    assert runtime_candidates("torch", "exact", "cpu", "AMX") == [TORCH_EXACT]
    assert runtime_candidates("auto", "fast", "cuda", "AMX") == [TORCH_FAST]
    with pytest.raises(PipelineError, match=r"^embed.runtime=onnxruntime runs on the CPU only, and embed.device is "
                                            r"cuda; use auto or torch \(allowed: auto, torch, onnxruntime, openvino\)$"):
        runtime_candidates("onnxruntime", "exact", "cuda", "AMX")
    with pytest.raises(PipelineError, match="^embed.runtime=openvino with embed.mode=fast needs a CPU with native "
                                            "bfloat16 .AVX512-BF16 or AMX., and this one has none"):
        runtime_candidates("openvino", "fast", "cpu", "AVX2")


def test_a_bad_runtime_param_is_one_line():
    with pytest.raises(PipelineError, match="embed.runtime"):
        EmbedConfig("m", runtime="tensorrt")


def test_exact_mode_runs_this_cpu_classes_runtime_within_1e4_of_torch_and_records_it(tmp_path, tiny_model, caplog):
    caplog.set_level("INFO")
    audio = tmp_path / "16k" / "Actor_01"
    audio.mkdir(parents=True)
    import soundfile as sf

    for index, seconds in enumerate((0.7, 1.3)):
        sf.write(audio / f"03-01-0{index + 1}-01-01-01-01.wav", tone(seconds, 16_000, 180.0 + 40 * index), 16_000,
                 subtype="PCM_16")
    outputs = {}
    for runtime in ("auto", "torch"):
        embedder = SpeechEncoderEmbedder(EmbedConfig(str(tiny_model), runtime=runtime))
        outputs[runtime] = embed_actor(embedder, audio, tmp_path / runtime, progress=False)
    record = json.loads((tmp_path / "auto" / "runtime.json").read_text())
    expected = runtime_candidates("auto", "exact", "cpu")[0]  # OpenVINO on AMX, else ONNX Runtime
    assert (record["runtime"], record["precision"]) == (expected.name, "float32")
    assert record["max_abs_diff_to_torch_float32"] <= 1e-4
    assert record["threads"] * record["clips_in_flight"] == torch.get_num_threads()
    assert json.loads((tmp_path / "torch" / "runtime.json").read_text())["runtime"] == "torch"
    assert f"embed Actor_01: {expected.name} {record['version']} float32 on this {record['cpu_class']} CPU" in caplog.text
    for ours, reference in zip(outputs["auto"], outputs["torch"]):
        frames, expected = np.load(ours), np.load(reference)
        assert frames.shape == expected.shape and not np.array_equal(frames, expected)  # it really ran elsewhere
        np.testing.assert_allclose(frames, expected, atol=1e-4, rtol=0)
        np.testing.assert_allclose(np.load(ours.parent / "layer_summary" / ours.name),
                                   np.load(reference.parent / "layer_summary" / reference.name), atol=1e-4, rtol=0)


def test_fast_mode_runs_outside_torch_and_passes_its_cosine_check(tiny_model):
    exact = SpeechEncoderEmbedder(EmbedConfig(str(tiny_model), runtime="torch")).embed(CLIP)
    embedder = SpeechEncoderEmbedder(EmbedConfig(str(tiny_model), mode="fast"))
    assert embedder.runtime == runtime_candidates("auto", "fast", "cpu", feature_encoder=True)[0]
    fast = embedder.embed(CLIP)
    cosine = (exact * fast).sum(-1) / (np.linalg.norm(exact, axis=-1) * np.linalg.norm(fast, axis=-1))
    assert fast.shape == exact.shape and not np.array_equal(fast, exact)
    assert cosine.mean() >= FAST_MIN_COSINE
    # The log line's figure shows the cosine to its floor's precision, not rounded up to 1.
    assert f"mean cosine {embedder.runtime_record['mean_cosine_to_torch_float32']:.5f} to torch" in describe(
        embedder.runtime_record)


@pytest.mark.parametrize("mode, runtime", [("exact", ONNXRUNTIME_EXACT), ("fast", ONNXRUNTIME_SPLIT)])
def test_onnx_runtime_exact_and_the_split_fast_mode_keep_a_clip_per_thread_in_flight_with_the_frames_of_one_at_a_time(
        tiny_model, mode, runtime):
    embedder = SpeechEncoderEmbedder(EmbedConfig(str(tiny_model), mode=mode))
    if embedder.runtime != runtime:
        pytest.skip(f"{mode} mode runs {embedder.runtime} on this CPU")
    threads = torch.get_num_threads()
    if threads < 2:
        pytest.skip("one thread: one clip in flight")
    record = embedder.runtime_record
    assert (record["threads"], record["clips_in_flight"]) == (1, threads) == (1, embedder.clips_in_flight)
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(16_000 + 977 * k).astype(np.float32) for k in range(7)]
    in_flight = list(embedder.embed_many(clips))
    assert torch.get_num_threads() == threads  # restored after the clips
    embedder.clips_in_flight = 1
    torch.set_num_threads(1)  # each clip in flight runs on one thread: the same bits as one at a time on one
    try:
        alone = list(embedder.embed_many(clips))
    finally:
        torch.set_num_threads(threads)
    for (frames, summary), (frames_alone, summary_alone) in zip(in_flight, alone, strict=True):
        assert np.array_equal(frames, frames_alone) and np.array_equal(summary, summary_alone)


def test_clips_in_flight_stopped_early_cancel_the_rest_and_restore_the_threads(tiny_model):
    embedder = SpeechEncoderEmbedder(EmbedConfig(str(tiny_model), mode="fast"))
    if embedder.clips_in_flight < 2:
        pytest.skip(f"fast mode runs {embedder.runtime}, one clip at a time, on this CPU")
    threads = torch.get_num_threads()
    calls = []
    embed_one = embedder._embed_one
    embedder._embed_one = lambda clip: calls.append(len(clip)) or embed_one(clip)
    clips = [np.random.default_rng(k).standard_normal(16_000).astype(np.float32) for k in range(40)]
    results = embedder.embed_many(clips)
    next(results)
    results.close()  # what an interrupt in embed_actor's loop does to it
    assert len(calls) < len(clips) and torch.get_num_threads() == threads


def _baked_length(model, inputs, all_layers):
    """A forward pass whose trace keeps the example's length as a constant: wrong at any other length."""
    values = inputs["input_values"]
    layers = hidden_layers(model, {"input_values": values[:, : int(values.shape[1])]}, all_layers)
    return tuple(layer[:, : int(layer.shape[1]) // 2 * 2] for layer in layers)


def _trial(tiny_model):
    embedder = SpeechEncoderEmbedder(EmbedConfig(str(tiny_model), runtime="torch"))
    noise = np.random.default_rng(0).standard_normal(32_000).astype(np.float32)
    return embedder.model, embedder._normalise(noise[:21_111])[None], embedder._normalise(noise)[None]


def test_an_export_that_fails_its_check_falls_back_to_torch_with_a_log_line(tiny_model, caplog):
    model, trial, example = _trial(tiny_model)
    forward = functools.partial(_baked_length, all_layers=True)
    runtime, run, record = load_runtime(model, forward, [ONNXRUNTIME_EXACT, TORCH_EXACT], pinned=False,
                                        trial=trial, example=example, input_name="input_values", dynamic=True)
    assert runtime == TORCH_EXACT and run is None
    [passed_over] = record["passed_over"]
    assert passed_over.startswith("onnxruntime float32: ")
    assert "embed: onnxruntime float32 cannot run this wav2vec2 model" in caplog.text
    assert "trying the next runtime" in caplog.text
    with pytest.raises(PipelineError, match="^embed.runtime=onnxruntime cannot run wav2vec2 in float32 here: .*; "
                                            "use auto or torch$"):
        load_runtime(model, forward, [ONNXRUNTIME_EXACT], pinned=True, trial=trial, example=example,
                     input_name="input_values", dynamic=True)


def _cache_entries():
    return sorted(os.listdir(os.path.join(os.environ["RAVDESS_SER_CACHE"], "onnx")))


def test_the_export_is_cached_by_what_it_is_made_of(tmp_path, monkeypatch, tiny_model):
    monkeypatch.setenv("RAVDESS_SER_CACHE", str(tmp_path / "cache"))
    SpeechEncoderEmbedder(EmbedConfig(str(tiny_model)))
    [entry] = _cache_entries()
    model_file = tmp_path / "cache" / "onnx" / entry / "model.onnx"
    written = model_file.stat().st_mtime_ns
    SpeechEncoderEmbedder(EmbedConfig(str(tiny_model)))  # the same model, outputs and code: read, not exported
    assert _cache_entries() == [entry] and model_file.stat().st_mtime_ns == written
    SpeechEncoderEmbedder(EmbedConfig(str(tiny_model), layer_summary=False))  # other outputs: another export
    SpeechEncoderEmbedder(EmbedConfig(str(tiny_model), mode="fast", runtime="onnxruntime"))  # its int8 copy
    entries = _cache_entries()
    assert len(entries) == 3 and entry in entries and sum(e.endswith("-int8") for e in entries) == 1
    assert oct((tmp_path / "cache" / "onnx").stat().st_mode & 0o777) == "0o700"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to hand the cache folder to a second user (nobody)")
@pytest.mark.parametrize("make_unsafe", ["another user's", "group-writable"])
def test_a_cache_folder_that_is_not_private_is_not_used(tmp_path, monkeypatch, tiny_model, caplog, make_unsafe):
    folder = tmp_path / "cache" / "onnx"
    folder.mkdir(parents=True)
    if make_unsafe == "another user's":
        nobody = pwd.getpwnam("nobody")
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        os.chmod(folder, 0o700)
    else:
        os.chmod(folder, 0o770)
    monkeypatch.setenv("RAVDESS_SER_CACHE", str(tmp_path / "cache"))
    embedder = SpeechEncoderEmbedder(EmbedConfig(str(tiny_model)))
    # Exported all the same, to a private temporary folder.
    assert embedder.runtime == runtime_candidates("auto", "exact", "cpu")[0]
    assert os.listdir(folder) == []
    assert "is not a private folder of this user's" in caplog.text and "exporting without it" in caplog.text
