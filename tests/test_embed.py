import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Model

from conftest import tone, write_wav
from ravdess_ser.audio import read_skip_report
from ravdess_ser.embed import EmbedConfig, SpeechEncoderEmbedder, embed_actor, length_buckets
from ravdess_ser.fast_mode import ChannelsLastConv1d, ChannelsLastGroupNorm, in_dtype_if_accurate
from ravdess_ser.errors import PipelineError
from ravdess_ser.models import save_random_wav2vec2


@pytest.fixture(scope="module")
def embedder(tiny_model):
    return SpeechEncoderEmbedder(EmbedConfig(str(tiny_model)))


def test_one_clip_gives_time_by_features(embedder):
    features = embedder.embed(tone(1.0, 16_000))
    assert features.shape == (49, 64) and features.dtype == np.float32 and np.isfinite(features).all()


def test_input_is_normalised_as_the_feature_extractor_says(embedder):
    clip = tone(1.0, 16_000)
    np.testing.assert_allclose(embedder.embed(clip), embedder.embed(7.0 * clip), atol=1e-4)


def _full_model_outputs(model_dir, clip, extractor):
    """Every block's output of the untruncated model, and its last_hidden_state."""
    model = Wav2Vec2Model.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        inputs = extractor(clip, sampling_rate=16_000, return_tensors="pt").input_values
        output = model(inputs, output_hidden_states=True)
    return [h[0].numpy() for h in output.hidden_states], output.last_hidden_state[0].numpy()


@pytest.mark.parametrize("stable_layer_norm", [False, True])
def test_shallow_layers_skip_the_blocks_above_and_match_the_full_model(tmp_path, stable_layer_norm):
    model_dir = save_random_wav2vec2(
        tmp_path / "m", seed=1, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        do_stable_layer_norm=stable_layer_norm, feat_extract_norm="layer" if stable_layer_norm else "group",
    )
    clip = tone(0.5, 16_000)
    full = SpeechEncoderEmbedder(EmbedConfig(str(model_dir), layer_summary=False))
    blocks, last_hidden_state = _full_model_outputs(model_dir, clip, full.extractor)
    for layer in range(3):
        embedder = SpeechEncoderEmbedder(EmbedConfig(str(model_dir), layer=layer, layer_summary=False))
        assert len(embedder.model.encoder.layers) == layer
        np.testing.assert_allclose(embedder.embed(clip), blocks[layer], atol=1e-5)
    # -1 and the top layer are the model's own last_hidden_state (with the final LayerNorm of pre-LN models).
    for top in (-1, 3):
        np.testing.assert_allclose(SpeechEncoderEmbedder(EmbedConfig(str(model_dir), layer=top, layer_summary=False)).embed(clip), last_hidden_state, atol=1e-5)


def test_layer_out_of_range_is_a_clear_error(tiny_model):
    with pytest.raises(PipelineError, match=r"embed.layer=9 is out of range: this model has 4 transformer layers"):
        SpeechEncoderEmbedder(EmbedConfig(str(tiny_model), layer=9))


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(PipelineError, match="model folder does not exist") as caught:
        SpeechEncoderEmbedder(EmbedConfig(str(tmp_path / "no-such-model")))
    assert "no-such-model" in str(caught.value)


def test_uncached_unreachable_hub_model_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    # Nothing listens on this loopback port, so the hub is unreachable wherever the test runs.
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(PipelineError) as caught:
        SpeechEncoderEmbedder(EmbedConfig("facebook/wav2vec2-base", revision="abc123"))
    message = str(caught.value)
    assert "neither a local model folder nor in the Hugging Face cache" in message
    assert "hf download facebook/wav2vec2-base --revision abc123" in message


def test_embed_actor_writes_one_array_per_clip_and_reports_skips(tmp_path, embedder):
    audio = tmp_path / "16k" / "Actor_01"
    write_wav(audio / "03-01-01-01-01-01-01.wav", tone(0.6, 16_000), 16_000)
    write_wav(audio / "03-01-01-01-01-02-01.wav", np.zeros(16_000, dtype=np.float32), 16_000)  # silent
    write_wav(audio / "03-01-01-01-02-01-01.wav", tone(0.01, 16_000), 16_000)  # 160 samples < 400
    write_wav(audio / "03-01-01-01-02-02-01.wav", tone(0.5, 48_000), 48_000)  # wrong rate
    out = tmp_path / "emb" / "Actor_01"
    written = embed_actor(embedder, audio, out, progress=False)
    assert sorted(p.name for p in written) == ["03-01-01-01-01-01-01.npy", "03-01-01-01-01-02-01.npy"]
    silent = np.load(out / "03-01-01-01-01-02-01.npy")
    assert np.isfinite(silent).all()
    skipped = dict(read_skip_report(out))
    assert "fewer than the model's receptive field (400 samples = 25 ms)" in skipped["03-01-01-01-02-01-01.wav"]
    assert "sample rate is 48000 Hz" in skipped["03-01-01-01-02-02-01.wav"]


def test_a_folder_at_a_rate_the_model_does_not_take_is_refused_before_any_clip_is_read(tmp_path, embedder):
    audio = tmp_path / "8k" / "Actor_01"
    for name in ("03-01-01-01-01-01-01.wav", "03-01-01-01-01-02-01.wav"):
        write_wav(audio / name, tone(0.6, 8_000), 8_000)
    with pytest.raises(PipelineError) as caught:
        embed_actor(embedder, audio, tmp_path / "emb" / "Actor_01", progress=False)
    assert str(caught.value) == (
        f"{audio}: the clips are 8000 Hz (e.g. 03-01-01-01-01-01-01.wav), but the model {embedder.config.model} "
        "takes 16000 Hz only (its feature extractor's sampling_rate); set resample.sample_rate: 16000")
    assert not (tmp_path / "emb").exists()


def _cosine_per_frame(a, b):
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_torchs_fast_mode_stays_close_to_exact(tiny_model):
    clip = tone(1.0, 16_000) + 0.01 * np.random.default_rng(0).standard_normal(16_000).astype(np.float32)
    exact = SpeechEncoderEmbedder(EmbedConfig(str(tiny_model), runtime="torch")).embed(clip)
    embedder = SpeechEncoderEmbedder(EmbedConfig(str(tiny_model), mode="fast", runtime="torch"))
    assert isinstance(embedder.model.encoder.layers[0].feed_forward.intermediate_dense, torch.ao.nn.quantized.dynamic.Linear)
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        assert embedder.model.feature_extractor.conv_layers[0].conv.weight.dtype == torch.bfloat16
    fast = embedder.embed(clip)
    assert fast.dtype == np.float32 and fast.shape == exact.shape
    assert not np.array_equal(fast, exact)  # it really ran in int8 and bfloat16
    assert _cosine_per_frame(fast, exact).mean() > 0.99


def test_a_module_whose_bfloat16_result_is_wrong_stays_float32(caplog):
    # bfloat16 rounds 1.003 to 1.0, so on a constant input this difference filter gives 0 instead of 0.003.
    difference = torch.nn.Conv1d(1, 1, 2, bias=False)
    difference.weight.data = torch.tensor([[[1.003, -1.0]]])
    assert in_dtype_if_accurate(difference, torch.bfloat16, torch.ones(1, 1, 10), "difference filter") is difference
    assert difference.weight.dtype == torch.float32 and "the difference filter stays float32" in caplog.text
    smoothing = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3, padding=1), torch.nn.GELU())
    converted = in_dtype_if_accurate(smoothing, torch.bfloat16, torch.randn(1, 1, 100), "smoothing filter")
    assert isinstance(converted[0], ChannelsLastConv1d) and converted[0].weight.dtype == torch.bfloat16
    assert converted(torch.randn(1, 1, 100)).dtype == torch.float32


@pytest.mark.parametrize("in_channels, stride, padding, groups", [
    (16, 1, 0, 1), (16, 2, 1, 1), (16, 1, 16, 8),  # oneDNN's channels-last conv2d
    (1, 5, 0, 1),  # one input channel: a matmul of the waveform's windows
])
def test_a_channels_last_convolution_computes_the_conv1d(in_channels, stride, padding, groups):
    conv = torch.nn.utils.parametrizations.weight_norm(
        torch.nn.Conv1d(in_channels, 32, 10, stride, padding, groups=groups), dim=2)
    x = torch.randn(2, in_channels, 200)
    with torch.no_grad():
        torch.testing.assert_close(ChannelsLastConv1d(conv)(x), conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_a_channels_last_group_norm_of_one_channel_per_group_computes_the_group_norm(batch):
    norm = torch.nn.GroupNorm(32, 32)
    torch.nn.init.normal_(norm.weight), torch.nn.init.normal_(norm.bias)
    x = torch.randn(batch, 200, 32).transpose(1, 2)  # channels-last memory, as the convolutions give it
    with torch.no_grad():
        torch.testing.assert_close(ChannelsLastGroupNorm(norm)(x), norm(x), rtol=1e-5, atol=1e-5)


def test_length_buckets_cover_every_clip_once_within_the_budget():
    lengths = [16_000, 70_000, 48_000, 50_000, 8_000, 64_000, 49_000]
    batches = length_buckets(lengths, max_padded_samples=150_000)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) * max(lengths[i] for i in batch) <= 150_000 or len(batch) == 1
    assert [[lengths[i] for i in batch] for batch in batches] == [[8_000], [16_000], [48_000, 49_000, 50_000], [64_000, 70_000]]


def test_batched_embedding_with_attention_mask_matches_single_clips(tmp_path):
    # wav2vec2-large style (layer-norm feature encoder): padding is masked, so batching changes nothing.
    model_dir = save_random_wav2vec2(
        tmp_path / "m", seed=2, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        do_stable_layer_norm=True, feat_extract_norm="layer",
    )
    embedder = SpeechEncoderEmbedder(EmbedConfig(str(model_dir)))
    clips = [tone(s, 16_000, f) for s, f in ((0.5, 200.0), (0.8, 300.0), (0.3, 150.0))]
    batched = embedder.embed_batch(clips)
    for clip, features in zip(clips, batched):
        single = embedder.embed(clip)
        assert features.shape == single.shape
        np.testing.assert_allclose(features, single, atol=1e-4)


def test_length_bucketed_batches_keep_the_clip_order_and_each_clips_own_frames(tmp_path):
    # The CUDA fast path's logic, run on the CPU in float32: buckets, padding, masks, cutting back, the summaries.
    model_dir = save_random_wav2vec2(
        tmp_path / "m", seed=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        do_stable_layer_norm=True, feat_extract_norm="layer",
    )
    embedder = SpeechEncoderEmbedder(EmbedConfig(str(model_dir), layer_summary=True, batch_seconds=2.0))
    clips = [tone(seconds, 16_000, 100.0 + 50 * i) for i, seconds in enumerate((0.9, 0.3, 0.8, 0.35, 0.5))]
    single = list(embedder.embed_many(clips))
    embedder.batches = True
    batched = list(embedder.embed_many(clips))
    assert len(length_buckets([len(c) for c in clips], 2.0 * 16_000)) < len(clips)  # some clips really shared a batch
    for (frames, summary), (frames_alone, summary_alone) in zip(batched, single):
        assert frames.shape == frames_alone.shape
        np.testing.assert_allclose(frames, frames_alone, atol=1e-4)
        np.testing.assert_allclose(summary, summary_alone, atol=1e-4)


def test_float16_storage_halves_the_file_and_bounds_the_error(tmp_path, tiny_model):
    audio = tmp_path / "16k" / "Actor_01"
    write_wav(audio / "03-01-01-01-01-01-01.wav", tone(1.0, 16_000), 16_000)
    sizes, arrays = {}, {}
    for storage in ("float32", "float16"):
        embedder = SpeechEncoderEmbedder(EmbedConfig(str(tiny_model), storage=storage))
        [path] = embed_actor(embedder, audio, tmp_path / storage, progress=False)
        sizes[storage], arrays[storage] = path.stat().st_size, np.load(path)
    assert arrays["float16"].dtype == np.float16
    assert sizes["float16"] - 128 <= (sizes["float32"] - 128) / 2  # the .npy header is 128 bytes
    relative = np.abs(arrays["float16"].astype(np.float32) - arrays["float32"]) / np.maximum(np.abs(arrays["float32"]), 1e-3)
    assert relative.max() <= 2**-11  # half precision: 11 significant bits


@pytest.mark.parametrize("preset, expected", [(None, "16"), ("64", "64")])
def test_the_package_bounds_onednns_primitive_cache_unless_the_user_set_it(preset, expected):
    # Unbounded, the cache keeps buffers for every clip length: an embed stage grew past 2 GB (see the benchmark).
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    if preset:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = preset
    out = subprocess.run([sys.executable, "-c", "import os, ravdess_ser; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == expected
