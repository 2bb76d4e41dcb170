"""The upstreams beyond wav2vec2's family: data2vec-audio, and Whisper's encoder with its 30 s window.

Each runs on its miniature random model (ravdess_ser/models.py), written to a temporary folder. The references are
Hugging Face's own models, untruncated, with their hidden states. The end-to-end `dvc repro` of each is in
test_upstreams_dvc.py (a module that builds DVC projects is marked dvc as a whole).
"""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, WhisperModel

from conftest import tone, write_wav
from ravdess_ser.audio import read_audio, read_skip_report
from ravdess_ser.embed import EmbedConfig, SpeechEncoderEmbedder, embed_actor, length_buckets
from ravdess_ser.embedding_files import layer_summary_path
from ravdess_ser.errors import PipelineError
from ravdess_ser.models import save_tiny_data2vec_audio, save_tiny_whisper

LAYERS = 4  # both miniature models have 4 blocks of 64 features
CLIP = tone(1.3, 16_000, 240.0) + 0.01 * np.random.default_rng(0).standard_normal(20_800).astype(np.float32)


@pytest.fixture(scope="module")
def data2vec_audio(tmp_path_factory):
    return save_tiny_data2vec_audio(tmp_path_factory.mktemp("models") / "data2vec-audio-tiny-random")


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    return save_tiny_whisper(tmp_path_factory.mktemp("models") / "whisper-tiny-random")


@pytest.fixture(scope="module", params=["data2vec-audio", "whisper"])
def model_dir(request, data2vec_audio, whisper):
    return {"data2vec-audio": data2vec_audio, "whisper": whisper}[request.param]


def _reference_layers(model_dir, clip, extractor) -> np.ndarray:
    """Hugging Face's untruncated model: the transformer's input, each block's output, and the model's output
    as the top layer (after Whisper's final LayerNorm), ``(layers + 1, frames, features)``, uncut."""
    if "whisper" in model_dir.name:
        model = WhisperModel.from_pretrained(model_dir).encoder.eval()
        inputs = extractor(clip, sampling_rate=16_000, return_tensors="pt").input_features
    else:
        model = AutoModel.from_pretrained(model_dir).eval()
        inputs = extractor(clip, sampling_rate=16_000, return_tensors="pt").input_values
    with torch.inference_mode():
        output = model(inputs, output_hidden_states=True)
    return np.stack([h[0].numpy() for h in output.hidden_states[:-1]] + [output.last_hidden_state[0].numpy()])


def test_frames_are_time_by_features_at_50_per_second(model_dir):
    frames = SpeechEncoderEmbedder(EmbedConfig(str(model_dir))).embed(CLIP)
    # 20 800 samples: wav2vec2's CNN gives floor((20800 - 400) / 320) + 1 frames; Whisper keeps ceil(20800 / 320).
    expected = 64 if "data2vec" in model_dir.name else 65
    assert frames.shape == (expected, 64) and frames.dtype == np.float32 and np.isfinite(frames).all()


@pytest.mark.slow
def test_layer_k_is_hugging_faces_hidden_state_k_and_the_blocks_above_are_not_computed(model_dir):
    embedder = SpeechEncoderEmbedder(EmbedConfig(str(model_dir), layer_summary=True))
    frames, summary = next(embedder.embed_many([CLIP]))
    reference = _reference_layers(model_dir, CLIP, embedder.extractor)[:, : frames.shape[0]]
    assert summary.shape == (LAYERS + 1, 2, 64)
    np.testing.assert_allclose(summary[:, 0], reference.mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(summary[:, 1], reference.std(axis=1), atol=1e-5)
    for layer in range(LAYERS + 1):
        truncated = SpeechEncoderEmbedder(EmbedConfig(str(model_dir), layer=layer, layer_summary=False))
        blocks = truncated.model.layers if "whisper" in model_dir.name else truncated.model.encoder.layers
        assert len(blocks) == layer
        np.testing.assert_allclose(truncated.embed(CLIP), reference[layer], atol=1e-5)
    np.testing.assert_allclose(embedder.embed(CLIP), reference[-1], atol=1e-5)  # layer -1 is the top one


def test_torchs_fast_mode_stays_close_to_exact(model_dir):
    exact = SpeechEncoderEmbedder(EmbedConfig(str(model_dir), runtime="torch")).embed(CLIP)
    embedder = SpeechEncoderEmbedder(EmbedConfig(str(model_dir), mode="fast", runtime="torch"))
    modules = list(embedder.model.modules())
    assert sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in modules) >= LAYERS * 6  # 6 per block
    assert not [m for m in modules if isinstance(m, torch.nn.Linear)]  # every linear layer is int8
    if "data2vec" in model_dir.name and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        assert embedder.model.feature_extractor.conv_layers[0].conv.weight.dtype == torch.bfloat16
        assert embedder.model.encoder.pos_conv_embed.layers[0].conv.weight.dtype == torch.bfloat16
    fast = embedder.embed(CLIP)
    assert not np.array_equal(fast, exact)  # it really ran in int8
    cosine = (exact * fast).sum(-1) / (np.linalg.norm(exact, axis=-1) * np.linalg.norm(fast, axis=-1))
    assert fast.shape == exact.shape and cosine.mean() > 0.99


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])  # exact mode's two exports, whatever this CPU picks
def test_whispers_encoder_runs_in_both_runtimes_within_1e4_of_torch(whisper, runtime):
    exported = SpeechEncoderEmbedder(EmbedConfig(str(whisper), runtime=runtime))
    assert exported.runtime.name == runtime  # pinned: a failed check would have stopped it
    [(frames, summary)] = exported.embed_many([CLIP])
    [(expected_frames, expected_summary)] = SpeechEncoderEmbedder(
        EmbedConfig(str(whisper), runtime="torch")).embed_many([CLIP])
    np.testing.assert_allclose(frames, expected_frames, atol=1e-4, rtol=0)
    np.testing.assert_allclose(summary, expected_summary, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_whisper_batches_give_each_clip_its_own_frames_and_summary(whisper):
    # The CUDA fast path's logic, run on the CPU in float32: Whisper pads every clip to its window anyway.
    # (data2vec-audio is never batched: see SpeechEncoderEmbedder.batches.)
    embedder = SpeechEncoderEmbedder(EmbedConfig(str(whisper), batch_seconds=70.0))
    clips = [tone(seconds, 16_000, 100.0 + 50 * i) for i, seconds in enumerate((0.9, 0.3, 0.8))]
    single = list(embedder.embed_many(clips))
    embedder.batches = True
    batched = list(embedder.embed_many(clips))
    assert [len(b) for b in length_buckets([480_000] * 3, 70.0 * 16_000)] == [2, 1]  # two windows fit in 70 s
    for (frames, summary), (frames_alone, summary_alone) in zip(batched, single):
        assert frames.shape == frames_alone.shape
        np.testing.assert_allclose(frames, frames_alone, atol=1e-4)
        np.testing.assert_allclose(summary, summary_alone, atol=1e-4)


# ----------------------------------------------------------------------------- Whisper's 30 s window


@pytest.fixture(scope="module")
def whisper_embedder(whisper):
    return SpeechEncoderEmbedder(EmbedConfig(str(whisper)))


@pytest.mark.parametrize("samples", [400, 1040, 1041, 1120, 1279, 1280, 1281, 20_800, 20_801, 480_000])
def test_whisper_keeps_the_frames_whose_centre_lies_in_the_clip(whisper_embedder, samples):
    [frames] = whisper_embedder.frame_counts([samples])
    # Frame j's centre: mel frame 2j (conv2, stride 2, padding 1), itself centred on sample 160 * 2j.
    assert frames == sum(1 for j in range(1500) if 320 * j < samples)
    # The same count from the extractor's own attention mask over mel frames, through the two convolutions:
    # conv1 keeps the length (kernel 3, padding 1), conv2 halves it, rounding up (kernel 3, stride 2, padding 1).
    clip = np.zeros(samples, dtype=np.float32)
    mel_mask = whisper_embedder.extractor(clip, sampling_rate=16_000, return_attention_mask=True).attention_mask[0]
    real_mel_frames = int(mel_mask.sum())
    assert real_mel_frames == -(-samples // 160)
    assert frames == (real_mel_frames + 2 * 1 - 3) // 2 + 1


def test_whisper_frames_and_summary_are_the_clips_own_not_the_windows_padding(tmp_path, whisper, whisper_embedder):
    audio = tmp_path / "16k" / "Actor_01"
    write_wav(audio / "03-01-01-01-01-01-01.wav", CLIP, 16_000)
    [path] = embed_actor(whisper_embedder, audio, tmp_path / "emb", progress=False)
    frames, summary = np.load(path), np.load(layer_summary_path(path))
    assert frames.shape == (65, 64)  # of the window's 1500 frames, the 65 of 1.3 s
    samples, _ = read_audio(audio / "03-01-01-01-01-01-01.wav")
    reference = _reference_layers(whisper, samples, whisper_embedder.extractor)
    assert reference.shape == (LAYERS + 1, 1500, 64)
    np.testing.assert_allclose(frames, reference[-1, :65], atol=1e-5)
    np.testing.assert_allclose(summary[:, 0], reference[:, :65].mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(summary[:, 1], reference[:, :65].std(axis=1), atol=1e-5)
    # Over the whole window the padding's frames would dominate: the summary is measurably not that.
    assert np.abs(summary[:, 0] - reference.mean(axis=1)).max() > 1e-2


def test_whisper_skips_clips_longer_than_its_window_and_says_so(tmp_path, whisper_embedder):
    whisper_embedder.check_length(np.zeros(480_000, dtype=np.float32))  # exactly 30 s fits
    audio = tmp_path / "16k" / "Actor_01"
    write_wav(audio / "03-01-01-01-01-01-01.wav", tone(0.5, 16_000), 16_000)
    write_wav(audio / "03-01-01-01-01-02-01.wav", tone(30.5, 16_000), 16_000)
    written = embed_actor(whisper_embedder, audio, tmp_path / "emb", progress=False)
    assert [p.name for p in written] == ["03-01-01-01-01-01-01.npy"]
    assert dict(read_skip_report(tmp_path / "emb")) == {
        "03-01-01-01-01-02-01.wav": "clip is 30.5 s long, longer than the Whisper encoder's one window of 30 s "
                                    "(embed does not chunk clips)"}


def test_whisper_loads_the_encoder_from_a_whole_checkpoint_a_whisper_model_or_the_encoder_alone(tmp_path, whisper):
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    whole = SpeechEncoderEmbedder(EmbedConfig(str(whisper)))  # model.encoder.*, as openai/whisper-* on the hub
    encoder = WhisperModel.from_pretrained(whisper).encoder
    encoder.save_pretrained(tmp_path / "encoder")  # no prefix
    WhisperModel.from_pretrained(whisper).save_pretrained(tmp_path / "model")  # encoder.*
    for folder in ("encoder", "model"):
        whole.extractor.save_pretrained(tmp_path / folder)
        loaded = SpeechEncoderEmbedder(EmbedConfig(str(tmp_path / folder)))
        assert loaded.model.state_dict().keys() == whole.model.state_dict().keys()
        for name, tensor in whole.model.state_dict().items():
            assert torch.equal(loaded.model.state_dict()[name], tensor), (folder, name)
    assert isinstance(whole.model, WhisperEncoder)


def test_a_whisper_checkpoint_without_its_encoder_weights_is_refused(tmp_path, whisper):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (broken / name).write_bytes((whisper / name).read_bytes())
    weights = load_file(whisper / "model.safetensors")
    del weights["model.encoder.conv1.weight"]
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(PipelineError, match=r"is a whisper model without encoder weights for 1 of the encoder's "
                                            r"parameters \(e.g. conv1.weight\)"):
        SpeechEncoderEmbedder(EmbedConfig(str(broken)))


def test_a_float16_checkpoint_runs_in_float32_in_exact_mode(tmp_path, model_dir):
    # The hub's openai/whisper-large-v3 is a float16 checkpoint; transformers 5 would load it as such.
    model = (WhisperModel if "whisper" in model_dir.name else AutoModel).from_pretrained(model_dir).half()
    model.save_pretrained(tmp_path / "float16")
    for name in ("preprocessor_config.json",):
        (tmp_path / "float16" / name).write_bytes((model_dir / name).read_bytes())
    embedder = SpeechEncoderEmbedder(EmbedConfig(str(tmp_path / "float16")))
    assert {parameter.dtype for parameter in embedder.model.parameters()} == {torch.float32}
    assert embedder.embed(CLIP).dtype == np.float32


@pytest.mark.parametrize("save", [save_tiny_data2vec_audio, save_tiny_whisper])
def test_the_miniature_models_rebuild_bit_for_bit(tmp_path, save):
    first, second = save(tmp_path / "a"), save(tmp_path / "b")
    for path in sorted(first.iterdir()):
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name
