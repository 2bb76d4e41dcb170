"""The embed stage against other runtimes of the same model on the same clips and threads, in one run.

Runtimes, each given one clip at a time:

- torch fp32: the model in torch's eager mode (``embed.runtime: torch``), every hidden state out, on
  pre-normalised input;
- the exact and the fast stage's per-clip path (normalisation, forward pass, layer summaries) on raw clips, in
  the runtimes ``embed.runtime: auto`` picks on this CPU (ravdess_ser/cpu_runtimes.py);
- ONNX Runtime fp32: ``torch.onnx.export`` of the same model (opset 17, every hidden state an output),
  all graph optimisations, the same thread count, on pre-normalised input: the exact stage's own export and
  session, without the stage around it;
- ONNX Runtime dynamic int8: the same graph with its MatMuls quantised (``quantize_dynamic``);
- OpenVINO f32: the same ONNX file, inference precision pinned to f32 (on a bf16 CPU it would pick bf16).

The machine is shared, so no absolute time is trusted alone: a round is one pass of every runtime over all
the clips, the runtimes taking turns and their order rotating from round to round, and a ratio is the median
over rounds of the per-round ratio. Within its pass a runtime embeds the clips back to back, as the embed stage
does, which has one runtime in its process. Taking turns clip by clip instead (the method until December 2026)
put on each clip costs the stage never meets: the previous runtime's threads still spinning, and its weights
having pushed the next one's out of the caches. On the Zen 5 EPYC fast mode (torch's bfloat16 feature encoder
before ONNX Runtime) ran 1.64x exact clip by clip with 20 ms pauses, 1.75x with 0.25 s pauses, 1.80x in passes,
and 1.86x in the embed stage's own loop over an actor. Before each timed pass the benchmark waits
:data:`SETTLE_SECONDS`, untimed, so that no runtime's spinning threads take the cores from the next one.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ravdess_ser.cpu_runtimes import ForwardModule, export_onnx, onnxruntime_run, openvino_run, runtime_version
from ravdess_ser.embed import SpeechEncoderEmbedder, hidden_layers

# A pass: clips in, each one's last layer's frames (T, features) out, in order; the stages may keep several clips in
# flight at once (SpeechEncoderEmbedder.clips_in_flight), as they do over an actor.
Runner = Callable[[list[np.ndarray]], list[np.ndarray]]
SETTLE_SECONDS = 0.2
# Each round's clips are this many samples shorter than the last round's (a prime, so every convolution's output
# length moves too): the stage meets every length once, and OpenVINO prepares its kernels anew for each input shape
# it has not seen (on the miniature model 69 ms a clip the first time, 17 ms after), which a benchmark repeating
# the same lengths would hide.
LENGTH_STEP = 331


def cut_short(values: np.ndarray, times: int) -> np.ndarray:
    """``values`` without its last ``times`` * :data:`LENGTH_STEP` samples."""
    return values[: len(values) - times * LENGTH_STEP]


def alternating_passes(runners: dict[str, Runner], inputs: dict[str, list[np.ndarray]],
                       rounds: int) -> dict[str, list[float]]:
    """Each runner's seconds per round over its inputs (one per clip, the same clips for all, in each runner's own
    form), a pass of all of them in one call, one runner after the other, their order rotating from round to round;
    every runner first runs the first clip once, untimed. Round r runs each clip cut short by (r + 1) steps and the warm-up by
    (rounds + 1), so that no runner meets an input length twice."""
    names = list(runners)
    for name in names:
        runners[name]([cut_short(inputs[name][0], rounds + 1)])
    seconds = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            clips = [cut_short(values, round_index + 1) for values in inputs[name]]
            time.sleep(SETTLE_SECONDS)
            start = time.perf_counter()
            runners[name](clips)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def median_ratio(seconds: dict[str, list[float]], faster: str, slower: str) -> float:
    """How many times faster ``faster`` ran than ``slower``: the median over rounds of their per-round ratio."""
    return statistics.median(s / f for f, s in zip(seconds[faster], seconds[slower]))


def cosine_per_frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


def export_peer_onnx(model: torch.nn.Module, path: Path) -> Path:
    """``model`` as ONNX at ``path`` with every hidden state an output, the number of samples dynamic: the
    export the exact stage runs (ravdess_ser.cpu_runtimes), without its cache."""
    module = ForwardModule(model, functools.partial(hidden_layers, all_layers=True), "input_values")
    example = np.zeros((1, 64_000), dtype=np.float32)
    export_onnx(module, example, "input_values", dynamic=True, outputs=model.config.num_hidden_layers + 1, path=path)
    return path


def last_layer(run) -> Runner:
    return lambda clips: [run(values[None])[-1][0] for values in clips]


def stage_runner(embedder: SpeechEncoderEmbedder) -> Runner:
    """The stage's work over an actor's clips short of file I/O: normalisation, forward pass, layer summaries."""
    return lambda clips: [frames for frames, _ in embedder.embed_many(clips)]


def forward_runner(embedder: SpeechEncoderEmbedder) -> Runner:
    def run(values: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return embedder.model(torch.from_numpy(values)[None], output_hidden_states=True).last_hidden_state[0].numpy()
    return lambda clips: [run(values) for values in clips]


def measure_peers(exact: SpeechEncoderEmbedder, fast: SpeechEncoderEmbedder, clips: list[np.ndarray], rounds: int,
                  work: Path) -> dict:
    """Throughput, ratios and fidelity to torch fp32 of every runtime that is installed, on ``clips`` (16 kHz)."""
    threads = torch.get_num_threads()
    normalised = [exact._normalise(clip) for clip in clips]
    runners: dict[str, Runner] = {"torch fp32": forward_runner(exact), "exact stage": stage_runner(exact),
                                  "fast stage": stage_runner(fast)}
    stage_input = {"exact stage", "fast stage"}
    from onnxruntime.quantization import QuantType, quantize_dynamic

    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    fp32 = export_peer_onnx(exact.model, work / "model.onnx")
    export_seconds = time.perf_counter() - start
    int8 = work / "model.int8.onnx"
    quantize_dynamic(fp32, int8, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
    runners["ONNX Runtime fp32"] = last_layer(onnxruntime_run(fp32, threads))
    runners["ONNX Runtime int8"] = last_layer(onnxruntime_run(int8, threads))
    runners["OpenVINO f32"] = last_layer(openvino_run(fp32, threads, "float32"))

    inputs = {name: clips if name in stage_input else normalised for name in runners}
    frames = {name: run(inputs[name]) for name, run in runners.items()}
    seconds = alternating_passes(runners, inputs, rounds)
    audio_seconds = sum(len(clip) for clip in clips) / exact.sample_rate
    fidelity = {}
    for name in runners:
        pairs = list(zip(frames[name], frames["torch fp32"]))
        cosines = np.concatenate([cosine_per_frame(a, b) for a, b in pairs])
        fidelity[name] = {"max_abs_diff": float(max(np.abs(a - b).max() for a, b in pairs)),
                          "mean_cosine": float(cosines.mean()), "min_cosine": float(cosines.min())}
    ratios = {"exact_vs_onnxruntime_fp32": ("exact stage", "ONNX Runtime fp32"), "fast_vs_exact": ("fast stage", "exact stage"),
              "fast_vs_onnxruntime_int8": ("fast stage", "ONNX Runtime int8"), "torch_fp32_vs_onnxruntime_fp32":
              ("torch fp32", "ONNX Runtime fp32"), "openvino_vs_torch_fp32": ("OpenVINO f32", "torch fp32")}
    return {
        "clips": len(clips), "audio_seconds": audio_seconds, "rounds": rounds, "threads": threads, "turns": "passes",
        "versions": _versions(), "runtimes": {name: str(embedder.runtime) + (
            f", {embedder.clips_in_flight} clips in flight" if embedder.clips_in_flight > 1 else "")
            for name, embedder in (("exact stage", exact), ("fast stage", fast))},
        "onnx_export_seconds": export_seconds,
        "audio_seconds_per_second": {name: audio_seconds / statistics.median(s) for name, s in seconds.items()},
        "vs_torch_fp32": {name: median_ratio(seconds, name, "torch fp32") for name in runners},
        "ratios": {key: median_ratio(seconds, a, b) for key, (a, b) in ratios.items() if a in runners and b in runners},
        "fidelity_to_torch_fp32": fidelity, "seconds_per_round": seconds,
    }


def _versions() -> dict[str, str]:
    return {name: runtime_version(name) for name in ("torch", "onnxruntime", "openvino")}
