"""embed.layer_summary: every layer's mean and std over time, from the same forward pass as the frames.

Run on small random models of each architecture with wav2vec2's layout: wav2vec2 base-style (post-LN) and
large-style (pre-LN, with a final LayerNorm), HuBERT, WavLM and data2vec-audio. Whisper's encoder, whose summary
covers the clip's own frames of its 30 s window, is tested in test_upstreams.py.
"""

import numpy as np
import pytest
import torch
from transformers import AutoModel, HubertConfig, HubertModel, Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

from conftest import tone, write_wav
from ravdess_ser.embed import EmbedConfig, SpeechEncoderEmbedder, embed_actor
from ravdess_ser.embedding_files import layer_summary_path
from ravdess_ser.errors import PipelineError
from ravdess_ser.models import save_random_data2vec_audio, save_random_wav2vec2

SMALL = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7,
             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)


def _save(model, out_dir):
    model.eval().save_pretrained(out_dir)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module", params=["wav2vec2 post-LN", "wav2vec2 pre-LN", "hubert", "wavlm pre-LN", "data2vec-audio"])
def model_dir(request, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("model") / "m"
    torch.manual_seed(3)
    if request.param.startswith("wav2vec2"):
        stable = request.param.endswith("pre-LN")
        return save_random_wav2vec2(out_dir, seed=3, **SMALL, do_stable_layer_norm=stable,
                                    feat_extract_norm="layer" if stable else "group")
    if request.param == "hubert":
        return _save(HubertModel(HubertConfig(**SMALL)), out_dir)
    if request.param == "data2vec-audio":  # num_conv_pos_embeddings counts its positional convolutions: 5, as in base
        return save_random_data2vec_audio(out_dir, seed=3, **(SMALL | dict(num_conv_pos_embeddings=5)))
    return _save(WavLMModel(WavLMConfig(**SMALL, do_stable_layer_norm=True, feat_extract_norm="layer")), out_dir)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("16k") / "Actor_01"
    for index, (seconds, frequency) in enumerate(((0.6, 180.0), (0.9, 240.0), (0.5, 300.0))):
        write_wav(folder / f"03-01-0{index + 1}-01-01-01-01.wav", tone(seconds, 16_000, frequency), 16_000)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("layer", [-1, 0, 2])
def test_the_frames_are_exactly_the_same_with_the_summary_on(tmp_path, model_dir, audio_dir, layer):
    plain = embed_actor(SpeechEncoderEmbedder(EmbedConfig(str(model_dir), layer=layer, layer_summary=False)), audio_dir, tmp_path / "off",
                        progress=False)
    summarised = embed_actor(SpeechEncoderEmbedder(EmbedConfig(str(model_dir), layer=layer, layer_summary=True)),
                             audio_dir, tmp_path / "on", progress=False)
    assert [p.name for p in plain] == [p.name for p in summarised]
    for off, on in zip(plain, summarised):
        assert off.read_bytes() == on.read_bytes()
    assert not (tmp_path / "off" / "layer_summary").exists()
    assert sorted(p.name for p in (tmp_path / "on" / "layer_summary").iterdir()) == [p.name for p in plain]


def test_the_summary_is_every_layers_mean_and_std_over_time(tmp_path, model_dir, audio_dir):
    embedder = SpeechEncoderEmbedder(EmbedConfig(str(model_dir), layer_summary=True))
    [first, *_] = embed_actor(embedder, audio_dir, tmp_path, progress=False)
    summary = np.load(layer_summary_path(first))
    # The reference: Hugging Face's own hidden states of the untruncated model.
    from ravdess_ser.audio import read_audio

    samples, _ = read_audio(audio_dir / (first.stem + ".wav"))
    inputs = embedder.extractor(samples, sampling_rate=16_000, return_tensors="pt").input_values
    with torch.inference_mode():
        output = AutoModel.from_pretrained(model_dir).eval()(inputs, output_hidden_states=True)
    # The top layer is the model's output (after a pre-LN model's final LayerNorm), as embed.layer=-1 gives it.
    layers = np.stack([h[0].numpy() for h in output.hidden_states[:-1]] + [output.last_hidden_state[0].numpy()])
    assert summary.shape == (4, 2, 32) and summary.dtype == np.float32  # input + 3 blocks; mean, std; features
    np.testing.assert_allclose(summary[:, 0], layers.mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(summary[:, 1], layers.std(axis=1), atol=1e-5)
    np.testing.assert_allclose(summary[-1, 0], np.load(first).mean(axis=0), atol=1e-5)  # layer -1 is the top one


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime", "openvino"])
def test_frames_and_summary_come_from_one_forward_pass_per_clip(tmp_path, model_dir, audio_dir, runtime):
    embedder = SpeechEncoderEmbedder(EmbedConfig(str(model_dir), layer=1, layer_summary=True, runtime=runtime))
    assert len(embedder.model.encoder.layers) == 3  # every block is kept: the summary needs them all
    calls = []
    if runtime == "torch":
        embedder.model.register_forward_hook(lambda module, args, output: calls.append(1))
    else:
        run = embedder._run
        embedder._run = lambda values: calls.append(1) or run(values)
    written = embed_actor(embedder, audio_dir, tmp_path, progress=False)
    assert len(calls) == len(written) == 3


def test_float16_storage_applies_to_the_summary(tmp_path, model_dir, audio_dir):
    embedder = SpeechEncoderEmbedder(EmbedConfig(str(model_dir), layer_summary=True, storage="float16"))
    [first, *_] = embed_actor(embedder, audio_dir, tmp_path, progress=False)
    assert np.load(layer_summary_path(first)).dtype == np.float16


def test_fast_mode_runs_every_architecture_close_to_exact(model_dir):
    clip = tone(0.9, 16_000, 240.0) + 0.01 * np.random.default_rng(0).standard_normal(14_400).astype(np.float32)
    exact = SpeechEncoderEmbedder(EmbedConfig(str(model_dir))).embed(clip)
    fast = SpeechEncoderEmbedder(EmbedConfig(str(model_dir), mode="fast")).embed(clip)
    cosine = (exact * fast).sum(-1) / (np.linalg.norm(exact, axis=-1) * np.linalg.norm(fast, axis=-1))
    assert fast.shape == exact.shape and cosine.mean() > 0.99

@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])  # exact mode's two exports, whatever this CPU picks
def test_exact_mode_runs_every_architecture_in_both_runtimes_within_1e4_of_torch(model_dir, runtime):
    clip = tone(0.9, 16_000, 240.0) + 0.01 * np.random.default_rng(0).standard_normal(14_400).astype(np.float32)
    exported = SpeechEncoderEmbedder(EmbedConfig(str(model_dir), layer_summary=True, runtime=runtime))
    assert exported.runtime.name == runtime  # pinned: a failed check would have stopped it
    [(frames, summary)] = exported.embed_many([clip])
    [(expected_frames, expected_summary)] = SpeechEncoderEmbedder(
        EmbedConfig(str(model_dir), layer_summary=True, runtime="torch")).embed_many([clip])
    np.testing.assert_allclose(frames, expected_frames, atol=1e-4, rtol=0)
    np.testing.assert_allclose(summary, expected_summary, atol=1e-4, rtol=0)


def test_a_model_that_is_not_a_speech_encoder_is_refused(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
              ).save_pretrained(tmp_path / "bert")
    with pytest.raises(PipelineError, match="is a bert model; embed.model must be one of: wav2vec2, hubert, wavlm, data2vec-audio, whisper$"):
        SpeechEncoderEmbedder(EmbedConfig(str(tmp_path / "bert")))
