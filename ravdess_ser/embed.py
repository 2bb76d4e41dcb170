"""Frame embeddings from speech encoders through Hugging Face ``transformers``.

Two layouts: wav2vec2's (wav2vec2, HuBERT, WavLM, data2vec-audio: a CNN on the
normalised waveform, then the transformer), and Whisper's encoder (two
convolutions on WhisperFeatureExtractor's log-mel features, then the
transformer; the decoder is never loaded).

One ``(time, features)`` float32 array per clip, from a chosen transformer
layer. ``layer`` counts transformer blocks: 0 is the transformer's input (the
CNN features plus the position embedding), ``k`` is the output of block ``k``,
and ``-1`` is the model's ``last_hidden_state``. Blocks above the chosen layer
are removed from the model before it runs, so a shallow layer costs only what
it needs.

Whisper's encoder always takes one 30 s window: the feature extractor pads each
clip with silence to 30 s, and the encoder computes its 1500 frames (50 per
second). Only the frames of the clip itself are kept, for the saved frames and
for the layer summaries alike (:meth:`SpeechEncoderEmbedder.frame_counts`), so a
3 s clip gives 150 frames, and a longer window of padding never dilutes a mean.
Clips longer than the window are skipped with that reason, not chunked.

Each clip is embedded on its own, so a clip's result never depends on what
else was in a batch (wav2vec2-base's group norm makes padded batches differ).

With ``layer_summary`` the model runs all its layers once, and the same forward
pass also yields a compact per-layer summary of each clip: every hidden layer's
mean and standard deviation over time, ``(layers + 1, 2, features)``, saved to
``<out_dir>/layer_summary/<clip>.npy``. The classifier can then pick any layer,
or learn a weighted sum of all of them, without embedding again.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

import numpy as np
import soundfile as sf

from ravdess_ser.params import (DEVICES_ALLOWED, check_choice, check_param, convert_params, param, positive,
                                valid_device)
from ravdess_ser.atomic import remove_stale_temporaries, write_text_atomic
from ravdess_ser.audio import is_wav, read_audio, write_skip_report
from ravdess_ser.device import resolve_device
from ravdess_ser.errors import PipelineError
from ravdess_ser.embedding_files import LAYER_SUMMARY_DIR, layer_summary_path, save_embedding

log = logging.getLogger(__name__)
T, R = TypeVar("T"), TypeVar("R")

MODES = ("exact", "fast")
# embed.runtime's choices: what runs the model on the CPU (ravdess_ser.cpu_runtimes).
RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")
# What ran the model, written next to each actor's embeddings.
RUNTIME_RECORD = "runtime.json"
# Encoders with wav2vec2's layout: the same feature extractor, CNN front end and encoder.layers.
WAV2VEC2_LAYOUT = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")
# Whisper's encoder (of a whole Whisper checkpoint, as the hub has them), on its log-mel feature extractor.
WHISPER = "whisper"
SPEECH_ENCODERS = (*WAV2VEC2_LAYOUT, WHISPER)
STORAGE_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class EmbedConfig:
    """Which model, which layer, and where and how to run it."""

    model: str = param("models/wav2vec2-tiny-random", "a local Hugging Face model folder, or a hub id such as facebook/wav2vec2-base; "
                       f"model types: {', '.join(SPEECH_ENCODERS)}")
    revision: str | None = param(None, "hub revision (commit hash) to pin a hub model to; ignored for local folders")
    layer: int = param(-1, "transformer layer to keep: 0 = transformer input, k = output of block k, -1 = last hidden state")
    device: str = param("auto", "torch device: auto (CUDA if available, else CPU), cpu, cuda, cuda:1, ...")
    mode: str = param("exact", "exact: float32, one clip at a time; fast: int8 linear layers on the CPU (the "
                      "feature encoder in bfloat16 where the CPU has it natively), float16 length-bucketed batches "
                      "on CUDA (docs/performance.md has the trade-off)")
    runtime: str = param("auto", "what runs the model on the CPU: auto (ONNX Runtime: float32 in exact mode, int8 "
                         "MatMuls in fast mode, after a torch bfloat16 feature encoder where the CPU has native "
                         "bfloat16, a clip per thread; checked against torch, falling back to torch), onnxruntime, "
                         "openvino or torch; "
                         "CUDA always runs torch")
    storage: str = param("float32", "dtype of the saved .npy files: float32, or float16 to halve the disk")
    batch_seconds: float = param(120.0, "mode=fast on CUDA: padded audio seconds per batch")
    layer_summary: bool = param(True, "also save every layer's mean and std over time, (layers + 1, 2, features), "
                                "to <out_dir>/layer_summary/<clip>.npy; runs all layers, in the same forward pass")

    def __post_init__(self):
        convert_params(self, "embed")
        check_param("embed.model", self.model, self.model.strip() != "", "a model folder or a hub id")
        check_param("embed.layer", self.layer, self.layer >= -1,
                    "-1 (the last hidden state) or a layer number, 0 or more")
        check_param("embed.device", self.device, valid_device(self.device), DEVICES_ALLOWED)
        check_choice("embed.mode", self.mode, MODES)
        check_choice("embed.runtime", self.runtime, RUNTIMES)
        check_choice("embed.storage", self.storage, STORAGE_DTYPES)
        check_param("embed.batch_seconds", self.batch_seconds, positive(self.batch_seconds), "a positive number")


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the Hugging Face endpoint accepts a TCP connection (huggingface_hub would retry for a minute)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _load_pretrained(config: EmbedConfig):
    """The feature extractor and model: from a local folder, the HF cache, or the hub, in that order."""
    from transformers import AutoConfig, AutoModel, Wav2Vec2FeatureExtractor, WhisperFeatureExtractor
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a bar per weight file is noise in a stage log

    def load(source: str, **kwargs):
        model_type = AutoConfig.from_pretrained(source, **kwargs).model_type
        if model_type not in SPEECH_ENCODERS:
            raise PipelineError(f"'{source}' is a {model_type} model; embed.model must be one of: "
                                f"{', '.join(SPEECH_ENCODERS)}")
        # float32 whatever the checkpoint holds: transformers 5 would load openai/whisper-large-v3 in its float16.
        # Fast mode makes its own choice of lower precisions from there.
        if model_type == WHISPER:
            return (WhisperFeatureExtractor.from_pretrained(source, **kwargs),
                    _load_whisper_encoder(source, dtype="float32", **kwargs))
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(source, **kwargs)
        return extractor, AutoModel.from_pretrained(source, dtype="float32", **kwargs)

    folder = Path(config.model).expanduser()
    if folder.exists():
        if not folder.is_dir():
            raise PipelineError("is a file, not a model folder (expected a Hugging Face model folder or hub id)", folder)
        if not (folder / "config.json").is_file():
            raise PipelineError("model folder has no config.json (expected a Hugging Face model folder)", folder)
        try:
            return load(str(folder))
        except (OSError, ValueError) as error:
            raise PipelineError(f"cannot load a speech model from this folder ({error})", folder) from None
    if _looks_like_path(config.model):
        raise PipelineError("model folder does not exist (embed.model)", folder)
    try:
        return load(config.model, revision=config.revision, local_files_only=True)
    except OSError:
        pass
    if hub_reachable():
        try:
            return load(config.model, revision=config.revision)
        except OSError as error:
            raise PipelineError(f"cannot load '{config.model}' from the Hugging Face hub ({error})") from None
    revision = f" --revision {config.revision}" if config.revision else ""
    raise PipelineError(
        f"'{config.model}' (revision {config.revision or 'main'}) is neither a local model folder nor in the "
        "Hugging Face cache, and the hub cannot be reached. On a machine with internet access run "
        f"`hf download {config.model}{revision}` and copy ~/.cache/huggingface to this machine, or save the "
        "model with save_pretrained() and set embed.model to that folder."
    )


def _load_whisper_encoder(source: str, **kwargs):
    """Whisper's encoder alone, from a whole model's checkpoint (``model.encoder.*`` as the hub's
    WhisperForConditionalGeneration has it, or ``encoder.*``) or from an encoder saved on its own."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # else the decoder's weights, left unread, are listed one per line
    try:
        encoder, loading = WhisperEncoder.from_pretrained(source, key_mapping={r"^(?:model\.)?encoder\.": ""},
                                                          output_loading_info=True, **kwargs)
    finally:
        transformers_logging.set_verbosity(verbosity)
    if loading["missing_keys"]:  # transformers would leave them randomly initialised
        missing = sorted(loading["missing_keys"])
        raise PipelineError(f"'{source}' is a whisper model without encoder weights for {len(missing)} of the "
                            f"encoder's parameters (e.g. {missing[0]})")
    return encoder


def check_layer(layer: int, num_layers: int) -> None:
    if not (layer == -1 or 0 <= layer <= num_layers):
        raise PipelineError(
            f"embed.layer={layer} is out of range: this model has {num_layers} transformer layers "
            f"(use 0..{num_layers}, or -1 for the last hidden state)"
        )


def truncate_to_layer(model, layer: int):
    """Drop the transformer blocks above ``layer`` so they are never computed."""
    import torch

    num_layers = model.config.num_hidden_layers
    check_layer(layer, num_layers)
    if layer == -1 or layer == num_layers:
        return model
    whisper = model.config.model_type == WHISPER
    transformer = model if whisper else model.encoder  # what holds the blocks (layers) and the final layer_norm
    transformer.layers = transformer.layers[:layer]
    if whisper or getattr(model.config, "do_stable_layer_norm", False):  # data2vec-audio has no such setting: post-LN
        # Pre-LN models apply a final LayerNorm after the last block only; block k's own output has none.
        transformer.layer_norm = torch.nn.Identity()
    return model


class SpeechEncoderEmbedder:
    """A loaded model, ready to turn 16 kHz mono waveforms into frame embeddings.

    ``mode="exact"`` runs float32, one clip at a time: a clip's result never
    depends on what else is embedded. ``mode="fast"`` on the CPU quantises the
    model (:func:`ravdess_ser.fast_mode.quantise_for_cpu`), still one clip at a time; on CUDA it runs
    under float16 autocast, with clips in length-bucketed, zero-padded batches
    (see :meth:`embed_many` for what padding changes).
    """

    def __init__(self, config: EmbedConfig):
        self.config = config
        self.device = resolve_device(config.device)
        self.extractor, model = _load_pretrained(config)
        self.whisper = model.config.model_type == WHISPER
        self.sample_rate = self.extractor.sampling_rate
        self.receptive_field = _receptive_field(_front_end(model, self.extractor))
        # Whisper's one window (30 s): its extractor would cut a longer clip without a word.
        self.max_samples = self.extractor.n_samples if self.whisper else None
        self.samples_per_frame = None
        if self.whisper:
            # Encoder frame j is centred on mel frame 2j (conv2: kernel 3, stride 2, padding 1, on conv1's stride-1
            # outputs), which is centred on sample 2j * hop_length (the STFT is centred): so the frames whose centre
            # lies in a clip of n samples are the first ceil(n / 320), and the mel frames the extractor's attention
            # mask marks as real, ceil(n / 160), give the same count through the two convolutions.
            self.samples_per_frame = self.extractor.hop_length * model.conv1.stride[0] * model.conv2.stride[0]
        if config.layer_summary:
            check_layer(config.layer, model.config.num_hidden_layers)  # the summary needs every layer: keep them all
        else:
            model = truncate_to_layer(model, config.layer)
        model = model.to(self.device).eval()
        self.runtime, self._run, self.runtime_record = self._load_runtime(model)
        self.clips_in_flight = self.runtime_record.get("clips_in_flight", 1)
        if self.runtime.name == "torch" and config.mode == "fast" and self.device.type == "cpu":
            from ravdess_ser.fast_mode import quantise_for_cpu

            model = quantise_for_cpu(model)
        self.model = model
        # Length-bucketed batches pay off on a GPU only; a CPU runs one clip at a time at full speed. data2vec-audio's
        # stack of positional convolutions carries the padding into a clip's last frames, and attention spreads it
        # (per-frame cosine to the clip alone down to 0.6 on the miniature model): it runs one clip at a time too.
        self.batches = (config.mode == "fast" and self.device.type == "cuda"
                        and model.config.model_type != "data2vec-audio")

    def _load_runtime(self, model):
        """What runs ``model``: torch itself, or an export of it in ONNX Runtime or OpenVINO on the CPU
        (:mod:`ravdess_ser.cpu_runtimes`), with its run and its record for ``runtime.json``."""
        from ravdess_ser.cpu_runtimes import load_runtime, runtime_candidates

        candidates = runtime_candidates(self.config.runtime, self.config.mode, self.device.type,
                                        feature_encoder=hasattr(model, "feature_extractor"))
        # Noise of two lengths: the export's example and the check's trial clip differ, so that a length the
        # trace baked in shows in the check. Whisper's window has one length anyway.
        noise = np.random.default_rng(0).standard_normal(2 * self.sample_rate).astype(np.float32)
        if self.whisper:
            trial = example = self._log_mel([noise])["input_features"].cpu().numpy()
        else:
            example, trial = (self._normalise(noise[:n])[None] for n in (len(noise), len(noise) * 2 // 3))
        input_name = "input_features" if self.whisper else "input_values"
        return load_runtime(model, functools.partial(hidden_layers, all_layers=self.config.layer_summary),
                            candidates, pinned=self.config.runtime != "auto", trial=trial, example=example,
                            input_name=input_name, dynamic=not self.whisper)

    def _autocast(self):
        import torch

        if self.config.mode == "fast" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()  # exact mode, and the CPU's fast mode, which quantise_for_cpu set up

    def check_length(self, samples: np.ndarray) -> None:
        if samples.shape[0] < self.receptive_field:
            raise PipelineError(
                f"clip has {samples.shape[0]} samples, fewer than the model's receptive field "
                f"({self.receptive_field} samples = {1000 * self.receptive_field / self.sample_rate:.0f} ms)"
            )
        if self.max_samples is not None and samples.shape[0] > self.max_samples:
            raise PipelineError(
                f"clip is {samples.shape[0] / self.sample_rate:.1f} s long, longer than the Whisper encoder's one "
                f"window of {self.max_samples / self.sample_rate:.0f} s (embed does not chunk clips)"
            )

    def frame_counts(self, lengths: list[int]) -> list[int]:
        """How many of the model's output frames belong to clips of these lengths (in samples)."""
        import torch

        if self.whisper:
            return [-(-length // self.samples_per_frame) for length in lengths]  # see samples_per_frame
        return self.model._get_feat_extract_output_lengths(torch.tensor(lengths)).tolist()

    def _normalise(self, samples: np.ndarray) -> np.ndarray:
        """The feature extractor's input normalisation, applied to one clip on its own."""
        return self.extractor(samples, sampling_rate=self.sample_rate, return_tensors="np").input_values[0]

    def _log_mel(self, clips: list[np.ndarray]):
        """Whisper's input: each clip's log-mel features over its own 30 s window, ``(clips, mel bins, frames)``."""
        import torch

        features = [self.extractor(clip, sampling_rate=self.sample_rate, return_tensors="np").input_features
                    for clip in clips]
        return {"input_features": torch.from_numpy(np.concatenate(features)).to(self.device)}

    def _forward(self, inputs: dict):
        """The chosen layer's frames ``(batch, time, features)``, and with ``layer_summary`` every
        layer's, a list of ``layers + 1`` such tensors, from one forward pass."""
        import torch

        values = next(iter(inputs.values()))
        # The export takes one clip without a mask; batches (CUDA's fast mode, whose logic tests run on the CPU)
        # go through the torch model.
        if self._run is not None and len(inputs) == 1 and values.shape[0] == 1:
            layers = [torch.from_numpy(layer) for layer in self._run(values.numpy())]
        else:
            with torch.inference_mode(), self._autocast():
                layers = hidden_layers(self.model, inputs, self.config.layer_summary)
        if not self.config.layer_summary:
            return layers[-1].float(), None
        return layers[self.config.layer].float(), [layer.float() for layer in layers]

    def _embed_one(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        self.check_length(samples)
        if self.whisper:
            return self._embed_batch([samples])[0]
        input_values = torch.from_numpy(self._normalise(samples)).unsqueeze(0).to(self.device)
        frames, layers = self._forward({"input_values": input_values})
        summary = None if layers is None else summarise_layers([layer[0].cpu().numpy() for layer in layers])
        return frames[0].cpu().numpy(), summary

    def embed(self, samples: np.ndarray) -> np.ndarray:
        """Embed one clip: ``(samples,)`` float at the model's rate -> ``(frames, features)`` float32."""
        return self._embed_one(samples)[0]

    def embed_many(self, clips: list[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Embed clips in order: one at a time, several at once each on one thread where the runtime says so
        (``clips_in_flight``: ONNX Runtime on the CPU, :mod:`ravdess_ser.cpu_runtimes`), or on CUDA in fast mode as
        length-bucketed batches.

        Yields each clip's ``(frames, layer summary)``; the summary is None unless ``layer_summary`` is on.

        Batching pads the shorter clips of a batch with zeros after their own
        normalisation, and each clip's frames are cut back to its own length.
        Models whose feature encoder uses layer norm (wav2vec2-large) get an
        attention mask and stay within float16 noise of the single-clip
        result; wav2vec2-base's group norm spans the padding, so its batched
        frames differ slightly from single-clip ones. That is the trade-off of
        ``mode=fast`` on a GPU; ``mode=exact`` never batches, nor does
        data2vec-audio (see ``batches``). Whisper pads every clip to its window
        on its own anyway, so its batches change nothing.
        """
        if self.clips_in_flight > 1 or not self.batches:
            yield from self.map_in_flight(self._embed_one, clips)
            return
        for clip in clips:
            self.check_length(clip)
        # Whisper computes a whole window for every clip, whatever its length.
        costs = [self.max_samples if self.whisper else clip.shape[0] for clip in clips]
        results: dict[int, tuple] = {}
        for batch in length_buckets(costs, self.config.batch_seconds * self.sample_rate):
            for index, embedded in zip(batch, self._embed_batch([clips[i] for i in batch])):
                results[index] = embedded
        yield from (results[i] for i in range(len(clips)))

    def map_in_flight(self, function: Callable[[T], R], items: list[T]) -> Iterator[R]:
        """``function(item)`` for each item, in order, ``clips_in_flight`` items at once where the runtime says so,
        each on one thread (torch's threads set to one meanwhile). Stopped early (an interrupt), it cancels the
        items not yet started and waits for those running."""
        if self.clips_in_flight == 1:
            yield from map(function, items)
            return
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        executor = ThreadPoolExecutor(self.clips_in_flight, thread_name_prefix="embed")
        try:
            futures = [executor.submit(function, item) for item in items]
            for future in futures:
                yield future.result()
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(threads)

    def embed_batch(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """One zero-padded batch through the model; every clip's frames cut back to its own length."""
        return [frames for frames, _ in self._embed_batch(clips)]

    def _embed_batch(self, clips: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        import torch

        lengths = [clip.shape[0] for clip in clips]
        if self.whisper:
            inputs = self._log_mel(clips)  # padded to one window, each clip on its own: no mask to pass
        else:
            padded = np.zeros((len(clips), max(lengths)), dtype=np.float32)
            mask = np.zeros_like(padded, dtype=np.int64)
            for row, clip in enumerate(clips):
                padded[row, : lengths[row]] = self._normalise(clip)
                mask[row, : lengths[row]] = 1
            inputs = {"input_values": torch.from_numpy(padded).to(self.device)}
            # data2vec-audio has no feat_extract_norm: its feature encoder always uses layer norm.
            if getattr(self.model.config, "feat_extract_norm", "layer") == "layer":
                inputs["attention_mask"] = torch.from_numpy(mask).to(self.device)
        hidden, layers = self._forward(inputs)
        hidden = hidden.cpu().numpy()
        frames = self.frame_counts(lengths)
        # Each clip's summary covers its own frames only, never the padding.
        return [(hidden[row, : frames[row]], None if layers is None else summarise_layers(
                    [layer[row, : frames[row]].cpu().numpy() for layer in layers]))
                for row in range(len(clips))]


def hidden_layers(model, inputs: dict, all_layers: bool) -> tuple:
    """The model's output: every layer's hidden states, ``(layers + 1)`` tensors of ``(batch, time, features)``,
    if ``all_layers``, else the last hidden state alone, in a 1-tuple.

    hidden_states[k] is the output of block k (0: the transformer's input), what truncation keeps. The top layer
    is the model's output, after the final LayerNorm of pre-LN models, as embed.layer=-1 gives it (transformers'
    hidden_states[-1] stops before that LayerNorm). The ONNX export traces this function too.
    """
    output = model(**inputs, output_hidden_states=all_layers)
    if not all_layers:
        return (output.last_hidden_state,)
    return (*output.hidden_states[:-1], output.last_hidden_state)


def length_buckets(lengths: list[int], max_padded_samples: float, max_length_ratio: float = 1.25) -> list[list[int]]:
    """Group clip indices into batches of similar length whose padded size stays under the budget.

    Sorted by length, a batch grows while its padded size (count × longest)
    fits the budget and its longest clip is at most ``max_length_ratio`` times
    its shortest, which bounds the compute spent on padding to 25%.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for index in order:
        current = batches[-1] if batches else None
        if (current and (len(current) + 1) * lengths[index] <= max_padded_samples
                and lengths[index] <= max_length_ratio * lengths[current[0]]):
            current.append(index)
        else:
            batches.append([index])
    return batches


def _front_end(model, extractor) -> list[tuple[int, int]]:
    """The (kernel, stride) in samples of each layer between the waveform and the transformer, input first."""
    if model.config.model_type == WHISPER:  # the STFT, then the two convolutions on mel frames
        return [(extractor.n_fft, extractor.hop_length),
                *((conv.kernel_size[0], conv.stride[0]) for conv in (model.conv1, model.conv2))]
    return list(zip(model.config.conv_kernel, model.config.conv_stride))


def _receptive_field(layers: list[tuple[int, int]]) -> int:
    field = 1
    for kernel, stride in reversed(layers):
        field = (field - 1) * stride + kernel
    return field


def summarise_layers(layers) -> np.ndarray:
    """``(time, features)`` arrays, one per layer -> ``(layers, 2, features)``: each layer's mean and std over time.

    The standard deviation is the population one (divided by the frame count), as the
    classifier's own mean+std pooling computes it from frames. numpy computes them, in float64, on one thread:
    torch's OpenMP threads, woken between two ONNX Runtime runs, would fight its spinning threads for the cores
    (the exact stage ran at 0.82x its own ONNX Runtime session so on the 2-core AMX Xeon).
    """
    summaries = []
    for layer in layers:
        frames = layer.astype(np.float64)
        summaries.append([frames.mean(axis=0), frames.std(axis=0)])
    return np.asarray(summaries, dtype=np.float32)


def check_sample_rates(wavs: list[Path], model_rate: int, model: str, audio_dir: Path) -> None:
    """Refuse a folder none of whose clips is at the model's rate (a resample.sample_rate it does not take),
    from the WAV headers alone, before any clip is read; a stray clip at another rate is skipped like any bad clip."""
    rates = {}
    for path in wavs:
        with contextlib.suppress(sf.LibsndfileError, RuntimeError):  # unreadable: skipped with its reason below
            rates[path] = sf.info(path).samplerate
    if rates and model_rate not in rates.values():
        found = " and ".join(f"{rate} Hz" for rate in sorted(set(rates.values())))
        raise PipelineError(f"the clips are {found} (e.g. {next(iter(rates)).name}), but the model {model} takes "
                            f"{model_rate} Hz only (its feature extractor's sampling_rate); "
                            f"set resample.sample_rate: {model_rate}", audio_dir)


def embed_actor(embedder: SpeechEncoderEmbedder, audio_dir: Path, out_dir: Path, progress: bool = True) -> list[Path]:
    """Embed every WAV of one actor folder to ``out_dir/<clip>.npy``; skipped clips go to ``skipped.tsv``.

    With ``layer_summary``, each clip's layer summary goes to ``out_dir/layer_summary/<clip>.npy``. What ran the
    model (runtime, version, precision, CPU class and its check's figure) goes to ``out_dir/runtime.json``.
    """
    from tqdm import tqdm

    audio_dir, out_dir = Path(audio_dir), Path(out_dir)
    if not audio_dir.is_dir():
        raise PipelineError("audio folder does not exist", audio_dir)
    wavs = sorted(path for path in audio_dir.iterdir() if is_wav(path))
    check_sample_rates(wavs, embedder.sample_rate, embedder.config.model, audio_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    remove_stale_temporaries(out_dir / LAYER_SUMMARY_DIR)
    skipped, paths, clips = [], [], []
    for path in wavs:
        try:
            samples, rate = read_audio(path)
            if rate != embedder.sample_rate:
                raise PipelineError(f"sample rate is {rate} Hz, the model expects {embedder.sample_rate} Hz")
            embedder.check_length(samples)
        except PipelineError as error:
            skipped.append((path.name, error.reason))
            log.warning("skipped %s: %s", path, error.reason)
            continue
        paths.append(path)
        clips.append(samples)
    from ravdess_ser.cpu_runtimes import describe

    log.info("embed %s: %s", audio_dir.name, describe(embedder.runtime_record))
    written = []
    bar = tqdm(total=len(clips), desc=f"embed {audio_dir.name}", unit="clip", disable=not progress)
    for path, (features, summary) in zip(paths, embedder.embed_many(clips)):
        target = out_dir / (path.stem + ".npy")
        save_embedding(target, features, embedder.config.storage)
        if summary is not None:
            save_embedding(layer_summary_path(target), summary, embedder.config.storage)
        written.append(target)
        bar.update()
    bar.close()
    write_skip_report(out_dir, skipped)
    write_text_atomic(out_dir / RUNTIME_RECORD, json.dumps(embedder.runtime_record, indent=1, sort_keys=True) + "\n")
    return written


_loaded: dict[tuple, SpeechEncoderEmbedder] = {}


def _model_state(model: str) -> tuple:
    """What identifies a local model folder's contents cheaply: its files' paths, sizes and mtimes."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return ()
    return tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()))


def embed_actor_job(audio_dir: str, out_dir: str, config: dict) -> int:
    """:func:`embed_actor` with JSON arguments and result; the model stays loaded for the next actor (in the worker)."""
    embed_config = EmbedConfig(**config)
    key = (embed_config, _model_state(embed_config.model))
    if key not in _loaded:
        _loaded.clear()  # one model at a time keeps the worker's memory bounded
        _loaded[key] = SpeechEncoderEmbedder(embed_config)
    return len(embed_actor(_loaded[key], Path(audio_dir), Path(out_dir)))
