"""How close the embed stage runs to what this machine allows, and what the pipeline costs around it.

Everything is measured in one run on one machine, so the ratios hold even if
the machine is slower or busier than another:

1. throughput (seconds of audio per second) of a naive per-clip loop in the
   style of research notes, of the embed stage in exact mode and in fast mode,
   and of exact mode with a shallow layer;
2. achieved GFLOP/s against a large fp32 matmul, and a bf16 one where the CPU has native bfloat16;
3. `dvc repro` over the whole corpus against the pure forward-pass time of
   the same audio, with the rest broken down;
4. peak RSS of an embed stage, and disk used by float32 and float16 embeddings;
5. the exact and fast stages against torch fp32, ONNX Runtime fp32 and int8 and OpenVINO f32 on the same
   clips and threads, with each one's fidelity to torch fp32 (benchmarks/peer_runtimes.py).

The machine may be shared, so the modes run round by round (ABAB...), each figure is the median over
rounds, and the peers' ratios are medians of per-round ratios, each runtime embedding the clips back to back
in its turn and the order rotating round by round.
Every figure is printed with the CPU's class (AMX, AVX512-BF16, AVX-512 or AVX2, as the kernels see it).

The model has wav2vec2-base's architecture (``Wav2Vec2Config()`` defaults) with
random weights: the same FLOPs as facebook/wav2vec2-base, and no download.

    python benchmarks/embed_benchmark.py                 # full: 24 actors x 60 clips of ~3.7 s
    python benchmarks/embed_benchmark.py --actors 3 --throughput-actors 1 --rounds 1 --skip-dvc  # a quick look
    python benchmarks/embed_benchmark.py --actors 3 --peers-only        # only the runtimes side by side

The ONNX exports go to a cache in the scratch folder (RAVDESS_SER_CACHE), not the user's.
Results go to benchmarks/results/embed_benchmark.{json,md}, one section per CPU class: a run replaces what it
measured in its own class's section and keeps the other classes'. Run under benchmarks/cpu_mask.py, which hides
the CPU's wider features so that every runtime picks a narrower class's kernels, or with torch's kernels forced
narrower (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS), the section says so and is kept
apart: such figures are the narrower kernels on this CPU's cores, a hint at the narrower class, not a measurement
of it.

    python benchmarks/cpu_mask.py AVX2 -- python benchmarks/embed_benchmark.py --actors 3 --throughput-actors 1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from dvc_project import dvc, environment, make_project, update_params  # noqa: E402
from peer_runtimes import cosine_per_frame, measure_peers  # noqa: E402

from ravdess_ser.cpu import NATIVE_BFLOAT16, cpu_class, cpu_flags, cpu_signature  # noqa: E402
from ravdess_ser.audio import ResampleConfig, read_audio, resample_actor  # noqa: E402
from ravdess_ser.embed import EmbedConfig, SpeechEncoderEmbedder, embed_actor, save_embedding  # noqa: E402
from ravdess_ser.models import save_random_wav2vec2  # noqa: E402
from ravdess_ser.ravdess import actor_dirname  # noqa: E402


def best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gflops(dtype: torch.dtype, size: int = 3072) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    return 2 * size**3 / best_of(5, lambda: a @ b) / 1e9


def flops_per_audio_second(model_dir: Path, seconds: float = 4.0) -> tuple[float, str]:
    """Convolutions and linear layers counted by FlopCounterMode, plus attention (which it misses) by formula."""
    from torch.nn.utils import parametrize
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import Wav2Vec2Model

    model = Wav2Vec2Model.from_pretrained(model_dir).eval()
    # FlopCounterMode cannot see through the weight-norm parametrisation; removing it keeps every shape.
    parametrize.remove_parametrizations(model.encoder.pos_conv_embed.conv, "weight")
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        frames = model(torch.randn(1, int(16_000 * seconds))).last_hidden_state.shape[1]
    config = model.config
    attention = 4 * frames**2 * config.hidden_size * config.num_hidden_layers  # QK^T and AV, 2 FLOPs per MAC
    total = counter.get_total_flops() + attention
    how = (f"FlopCounterMode (2 FLOPs per multiply-add) over convolutions and linear layers of a {seconds:.0f} s "
           f"clip, plus 4*T^2*d*L for attention (T={frames} frames), divided by {seconds:.0f} s")
    return total / seconds, how


def naive_loop(raw_paths: list[Path], model_dir: Path, out_dir: Path) -> float:
    """The research-notes way: per clip, load, resample, fp32 forward, save."""
    import torchaudio.functional
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    extractor = Wav2Vec2FeatureExtractor.from_pretrained(model_dir)
    model = Wav2Vec2Model.from_pretrained(model_dir).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for path in raw_paths:
        audio, rate = sf.read(path, dtype="float32")
        audio = torchaudio.functional.resample(torch.from_numpy(audio), rate, 16_000).numpy()
        inputs = extractor(audio, sampling_rate=16_000, return_tensors="pt")
        with torch.no_grad():
            hidden = model(inputs.input_values).last_hidden_state[0].numpy()
        np.save(out_dir / (path.stem + ".npy"), hidden)
    return time.perf_counter() - start


def forward_only(embedder: SpeechEncoderEmbedder, clips: list[np.ndarray]) -> float:
    """Pure model time: normalised inputs prepared beforehand, only the forward passes timed, in the runtime the
    stage runs (``embedder.runtime``: ONNX Runtime on the CPU, not the torch model it was exported from), with
    as many clips in flight as the stage has."""
    inputs = [{"input_values": torch.from_numpy(embedder._normalise(clip)).unsqueeze(0)} for clip in clips]
    embedder._forward(inputs[0])
    start = time.perf_counter()
    for _ in embedder.map_in_flight(embedder._forward, inputs):
        pass
    return time.perf_counter() - start


def timed_embed(config: EmbedConfig, audio_dir: Path, out_dir: Path) -> tuple[float, float]:
    """(model load seconds, embed_actor seconds)."""
    start = time.perf_counter()
    embedder = SpeechEncoderEmbedder(config)
    loaded = time.perf_counter()
    embed_actor(embedder, audio_dir, out_dir, progress=False)
    return loaded - start, time.perf_counter() - loaded


def benchmark_params(actors: list[str], clip_seconds: float, model: str) -> dict:
    """The changes to params.yaml for the benchmark's project: its corpus, its model, and where it has fewer actors
    than the default protocol's folds need (all 24), a fold of each actor."""
    params = {"data": {"actors": actors, "synthetic_clip_seconds": clip_seconds}, "embed": {"model": model}}
    if len(actors) < 24:
        params["train"] = {"protocol": "custom", "folds": {str(int(a)): [int(a)] for a in actors},
                           "fold": str(int(actors[-1]))}
    return params


def frame_files(folder: Path) -> list[Path]:
    """The frame embeddings under ``folder``, ``<actor>/<clip>.npy``: not the layer summaries beside them."""
    return sorted(folder.glob("*/*.npy"))


def file_io_seconds(audio_paths: list[Path], embeddings: list[Path], out_dir: Path) -> float:
    """What the embed stage reads and writes: every 16 kHz clip, and every float32 embedding, written atomically."""
    arrays = [(path.name, np.load(path)) for path in embeddings]
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for path in audio_paths:
        read_audio(path)
    for name, features in arrays:
        save_embedding(out_dir / name, features, "float32")
    return time.perf_counter() - start


def timed_repro(project: Path) -> tuple[float, float, dict[str, float]]:
    """`dvc repro`: its wall time, the time before its first stage starts, and each stage's interval.

    A stage's interval runs from its "Running stage" line to the next one: its command, then DVC hashing
    and caching its outputs, writing dvc.lock and checking the next stage.
    """
    process = subprocess.Popen([str(Path(sys.executable).parent / "dvc"), "repro"], cwd=project,
                               # The worker must outlive the training stages for worker_peak_rss_mb to read it.
                               env=environment() | {"PYTHONUNBUFFERED": "1", "RAVDESS_SER_WORKER_IDLE": "900"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    start = time.perf_counter()
    marks, output = [], []
    for line in process.stdout:
        output.append(line)
        if found := re.search(r"Running stage '([^']+)'", line):
            marks.append((found.group(1), time.perf_counter()))
    end = time.perf_counter()
    if process.wait() != 0:
        raise RuntimeError("dvc repro failed:\n" + "".join(output))
    intervals = {name: (marks[i + 1][1] if i + 1 < len(marks) else end) - at for i, (name, at) in enumerate(marks)}
    return end - start, marks[0][1] - start, intervals


def worker_peak_rss_mb() -> float | None:
    """VmHWM of the warm stage worker that `dvc repro` left idling (its peak RSS over every job), then stop it."""
    found = subprocess.run(["pgrep", "-f", "-n", "ravdess_ser.worker"], capture_output=True, text=True).stdout.split()
    if not found:
        return None
    status = Path(f"/proc/{found[0]}/status").read_text()
    os.kill(int(found[0]), signal.SIGTERM)
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def import_seconds(module: str) -> float:
    return best_of(3, lambda: subprocess.run([sys.executable, "-c", f"import {module}"], check=True))


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*.npy"))


def stage_peak_rss(project: Path, actor: str) -> float:
    """Peak RSS in MB of one embed stage run in-process (the worker holds the same model and buffers).

    Measured from a fresh parent whose only child is the stage: RUSAGE_CHILDREN reports the largest
    child a process ever waited for, which in this script would include dvc and the train stage.
    """
    env = dict(os.environ, RAVDESS_SER_WORKER="0", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    with tempfile.TemporaryDirectory() as scratch:  # private: mode 0700, a fresh name
        probe = ("import resource, subprocess, sys; "
                 f"subprocess.run([sys.executable, '-m', 'stages.embed', 'data/audio_16k/Actor_{actor}', "
                 f"{scratch!r}], check=True, capture_output=True); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", probe], cwd=project, env=env, check=True, capture_output=True,
                             text=True)
    return int(out.stdout.split()[-1]) / 1024


def client_start_seconds(project: Path) -> float:
    """A stage client's own cost: interpreter start, imports, params; its job runs in the warm worker."""
    return best_of(3, lambda: subprocess.run([sys.executable, "-m", "stages.embed", "--help"], cwd=project,
                                             check=True, capture_output=True))


KERNEL_OVERRIDES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def machine_section() -> tuple[str, dict]:
    """The results file's section for this machine, and what it records of the machine.

    Keyed by CPU class and the CPU's family and model (:func:`ravdess_ser.cpu.cpu_signature`: two EPYCs of one
    class ran the same stage at 12.1 and 26.6 s audio/s); the class is the one the kernels see, and a run that
    sees less than /proc/cpuinfo lists (benchmarks/cpu_mask.py) gets a section of its own, and so does one with
    torch's kernels forced down (the ISA variables), as ONNX Runtime's MLAS and OpenVINO pick their kernels from
    the CPU regardless of those. Sections measured before the signature was recorded are keyed by class alone.
    """
    cpu, flags = cpu_flags()
    signature = cpu_signature()
    forced = {name: os.environ[name] for name in KERNEL_OVERRIDES if name in os.environ}
    kind, listed = cpu_class(), cpu_class(flags)
    torch_kernels = torch.backends.cpu.get_cpu_capability()
    key = ", ".join([kind, *([signature] if signature else []),
                     *([f"features above {kind} hidden on an {listed} CPU"] if kind != listed else []),
                     *([f"torch forced to {torch_kernels}"] if forced else [])])
    return key, {"cpu": cpu, "cpu_signature": signature, "cpu_class": kind, "cpu_class_listed": listed,
                 "native_bfloat16": kind in NATIVE_BFLOAT16,
                 "cores": os.cpu_count(),
                 "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                 "torch_kernels": torch_kernels, "kernel_overrides": forced,
                 # Other users' load changes the ratios too: torch's OpenMP threads suffer more from it than ORT's.
                 "load_average_before": os.getloadavg()[0]}


def save_section(results_dir: Path, key: str, r: dict) -> str:
    """Merge this run into its section of the results files, keeping every other section; the Markdown."""
    path = results_dir / "embed_benchmark.json"
    try:
        sections = json.loads(path.read_text())
    except (OSError, ValueError):
        sections = {}
    if not all(isinstance(section, dict) and "machine" in section for section in sections.values()):
        sections = {}  # a results file from before the per-class sections: its figures have no class
    sections[key] = sections.get(key, {}) | r
    path.write_text(json.dumps(sections, indent=2) + "\n")
    markdown = "\n".join(render(name, section) for name, section in sections.items())
    (results_dir / "embed_benchmark.md").write_text(markdown)
    return render(key, sections[key])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actors", type=int, default=24, help="actors in the corpus (3 to 24; each has 60 clips)")
    parser.add_argument("--clip-seconds", type=float, default=3.7, help="mean clip length (RAVDESS: about 3.7 s)")
    parser.add_argument("--throughput-actors", type=int, default=2, help="actors whose clips time the modes")
    parser.add_argument("--rounds", type=int, default=2, help="each throughput is measured this often, best kept")
    parser.add_argument("--model", type=Path, default=None,
                        help="a local wav2vec2-base folder (save_pretrained) to measure instead of random weights, "
                             "e.g. to check fast mode's cosine on real weights; the FLOPs are the same")
    parser.add_argument("--skip-dvc", action="store_true", help="skip the end-to-end `dvc repro`")
    parser.add_argument("--peer-clips", type=int, default=12, help="clips on which the runtimes are compared")
    parser.add_argument("--peer-rounds", type=int, default=5, help="rounds of the runtime comparison")
    parser.add_argument("--peers-only", action="store_true",
                        help="only the runtime comparison (on the first actor's clips); the rest of the section stays")
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch folder, emptied first (default: a fresh private one under $TMPDIR)")
    args = parser.parse_args()

    results_dir = REPO_ROOT / "benchmarks" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    if args.work is None:
        args.work = Path(tempfile.mkdtemp(prefix="ravdess-ser-benchmark-"))
    shutil.rmtree(args.work, ignore_errors=True)
    os.environ["RAVDESS_SER_CACHE"] = str(args.work / "onnx-cache")  # the dvc repro's stages inherit it
    actors = [f"{a:02d}" for a in range(1, args.actors + 1)]
    key, machine = machine_section()
    print(f"CPU class: {key} ({machine['cpu']}, {machine['cores']} cores, torch kernels {machine['torch_kernels']})",
          flush=True)
    r: dict = {"machine": machine, "config": {k: str(v) for k, v in vars(args).items()}}

    # The project the end-to-end run uses; its corpus and model serve every other measurement too.
    project = make_project(args.work / "project", {})
    model_dir = args.model.resolve() if args.model else save_random_wav2vec2(project / "models" / "wav2vec2-base-random")
    r["model"] = str(args.model) if args.model else "random weights, Wav2Vec2Config() defaults"
    model_param = str(model_dir.relative_to(project)) if model_dir.is_relative_to(project) else str(model_dir)
    update_params(project, benchmark_params(actors, args.clip_seconds, model_param))
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(["git", "commit", "-qm", "benchmark corpus and model"], cwd=project, check=True)

    start = time.perf_counter()
    dvc(project, "repro", "download")
    r["download_seconds"] = time.perf_counter() - start
    raw = project / "data" / "raw"
    audio_seconds = sum(sf.info(p).duration for p in raw.rglob("*.wav"))
    r["corpus"] = {"clips": len(list(raw.rglob("*.wav"))), "audio_seconds": audio_seconds}

    bench = args.work / "throughput"
    measured = actors[: 1 if args.peers_only else args.throughput_actors]
    audio_16k = bench / "16k"
    if args.peers_only:
        peers = {"peers": peer_section(model_dir, raw, audio_16k, measured, args)}
        print(save_section(results_dir, key, peers | {"machine": machine}))
        return

    # 2. the machine's limit, and the model's cost; emulated bf16 (AVX2, plain AVX-512) is no yardstick
    r["matmul_gflops"] = {"float32": matmul_gflops(torch.float32),
                          "bfloat16": matmul_gflops(torch.bfloat16) if machine["native_bfloat16"] else None}
    r["flops_per_audio_second"], r["flop_counting"] = flops_per_audio_second(model_dir)

    # 1. throughput on the clips of the first actors, every measure repeated in rounds, the median kept
    subset = [p for a in measured for p in sorted((raw / actor_dirname(int(a))).glob("*.wav"))]
    subset_seconds = sum(sf.info(p).duration for p in subset)
    r["throughput_subset"] = {"clips": len(subset), "audio_seconds": subset_seconds}
    modes = {"exact": EmbedConfig(str(model_dir)), "fast": EmbedConfig(str(model_dir), mode="fast"),
             "exact_layer6": EmbedConfig(str(model_dir), layer=6),
             "exact_float16_storage": EmbedConfig(str(model_dir), storage="float16")}
    timing: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.rounds):
        shutil.rmtree(bench, ignore_errors=True)
        timing["naive"].append(naive_loop(subset, model_dir, bench / "naive"))
        start = time.perf_counter()
        for actor in measured:
            resample_actor(raw / f"Actor_{actor}", audio_16k / f"Actor_{actor}", ResampleConfig(), progress=False)
        timing["resample"].append(time.perf_counter() - start)
        for name, config in modes.items():
            seconds, loads = 0.0, []
            for actor in measured:
                load, embed = timed_embed(config, audio_16k / f"Actor_{actor}", bench / name / actor)
                seconds += embed
                loads.append(load)
            timing[name].append(seconds)
            timing[f"model_load_{name}"].append(min(loads))
        clips_16k = [read_audio(p)[0] for p in sorted(audio_16k.rglob("*.wav"))]
        for name in ("exact", "fast"):
            timing[f"forward_only_{name}"].append(forward_only(SpeechEncoderEmbedder(modes[name]), clips_16k))
        timing["file_io"].append(file_io_seconds(sorted(audio_16k.rglob("*.wav")),
                                                 sorted((bench / "exact").rglob("*.npy")), bench / "io"))
    best = {name: statistics.median(times) for name, times in timing.items()}
    r["timing_rounds_seconds"] = dict(timing)
    throughput_modes = ("naive", "exact", "fast", "exact_layer6", "exact_float16_storage", "forward_only_exact",
                        "forward_only_fast")
    r["throughput_audio_seconds_per_second"] = {name: subset_seconds / best[name] for name in throughput_modes}
    r["model_load_seconds"] = {"exact": best["model_load_exact"], "fast": best["model_load_fast"]}

    exact_files = frame_files(bench / "exact")
    cosines = np.concatenate([cosine_per_frame(np.load(p), np.load(bench / "fast" / p.relative_to(bench / "exact")))
                              for p in exact_files])
    float16 = [np.load(bench / "exact_float16_storage" / p.relative_to(bench / "exact")).astype(np.float32)
               for p in exact_files]
    float32 = [np.load(p) for p in exact_files]
    r["fast_vs_exact_cosine"] = {"mean": float(cosines.mean()), "min": float(cosines.min())}
    r["float16_storage"] = {
        "max_abs_error": float(max(np.abs(a - b).max() for a, b in zip(float16, float32))),
        "max_relative_error": float(max((np.abs(a - b) / np.maximum(np.abs(b), 1e-6)).max()
                                        for a, b in zip(float16, float32))),
        "bytes_float32": folder_bytes(bench / "exact"), "bytes_float16": folder_bytes(bench / "exact_float16_storage"),
    }
    t = r["throughput_audio_seconds_per_second"]
    gflops = {name: t[name] * r["flops_per_audio_second"] / 1e9 for name in ("exact", "forward_only_exact", "fast")}
    r["achieved_gflops"] = gflops | {
        "exact_fraction_of_fp32_matmul": gflops["exact"] / r["matmul_gflops"]["float32"],
        "forward_fraction_of_fp32_matmul": gflops["forward_only_exact"] / r["matmul_gflops"]["float32"],
        "fast_fraction_of_bf16_matmul": gflops["fast"] / r["matmul_gflops"]["bfloat16"]
        if r["matmul_gflops"]["bfloat16"] else None,
    }
    r["peers"] = peer_section(model_dir, raw, audio_16k, measured, args)
    per_audio_second = {"resample": best["resample"] / subset_seconds, "file_io": best["file_io"] / subset_seconds,
                        "forward": best["forward_only_exact"] / subset_seconds,
                        "embed_stage": best["exact"] / subset_seconds}

    # 3. and 4. end to end
    if not args.skip_dvc:
        total, before_first_stage, intervals = timed_repro(project)
        r["worker_peak_rss_mb"] = worker_peak_rss_mb()
        client = client_start_seconds(project)
        training_import = import_seconds("ravdess_ser.train")
        forward = per_audio_second["forward"] * audio_seconds
        groups = {"resample": [n for n in intervals if n.startswith("resample@")],
                  "embed": [n for n in intervals if n.startswith("embed@")],
                  "training": [n for n in intervals if n.split("@")[0] in ("train", "crossval", "layer-sweep")],
                  "label-manifest": ["label-manifest"]}
        if len(groups["embed"]) != len(actors):  # a breakdown of a repro that restored stages would mean nothing
            raise RuntimeError(f"dvc repro ran {len(groups['embed'])} embed stages, expected {len(actors)}")
        group_seconds = {name: sum(intervals[n] for n in stages) for name, stages in groups.items()}
        embed_in_process = per_audio_second["embed_stage"] * audio_seconds
        parts = {
            "DVC start-up and status checks, before the first stage": before_first_stage,
            f"resample@XX ({len(groups['resample'])} stages), in all": group_seconds["resample"],
            "  of which: resampling and its file I/O (in-process rate, scaled)": per_audio_second["resample"] * audio_seconds,
            f"  of which: stage clients, {len(groups['resample'])} x {client:.2f} s start-up": len(groups["resample"]) * client,
            f"embed@XX ({len(groups['embed'])} stages), in all": group_seconds["embed"],
            "  of which: forward passes (scaled)": forward,
            "  of which: reading clips, writing .npy (scaled)": per_audio_second["file_io"] * audio_seconds,
            "  of which: the rest of embed_actor in-process, normalisation and copies (a difference of two measurements)":
                embed_in_process - forward - per_audio_second["file_io"] * audio_seconds,
            f"  of which: stage clients, {len(groups['embed'])} x {client:.2f} s start-up": len(groups["embed"]) * client,
            "  of which: one model load in the warm worker": best["model_load_exact"],
            "label-manifest": group_seconds["label-manifest"],
            f"training stages ({', '.join(groups['training'])}), in all": group_seconds["training"],
            f"  of which: {len(groups['training'])} x {training_import:.2f} s Python start-up and imports":
                len(groups["training"]) * training_import,
        }
        within_stages = (per_audio_second["resample"] + per_audio_second["embed_stage"]) * audio_seconds \
            + (len(groups["resample"]) + len(groups["embed"])) * client + best["model_load_exact"]
        parts["DVC itself and the worker's relay in the per-actor stages (their intervals minus the parts above)"] = \
            group_seconds["resample"] + group_seconds["embed"] - within_stages
        data_pipeline = before_first_stage + group_seconds["resample"] + group_seconds["embed"] + group_seconds["label-manifest"]
        r["end_to_end"] = {
            "dvc_repro_seconds_after_download": total, "pure_forward_seconds": forward, "ratio": total / forward,
            "data_pipeline_seconds": data_pipeline, "data_pipeline_ratio": data_pipeline / forward,
            "stage_intervals_seconds": intervals, "breakdown_seconds": parts,
        }
        r["embed_stage_peak_rss_mb"] = stage_peak_rss(project, actors[0])
        r["disk_embeddings_bytes"] = folder_bytes(project / "experiments" / "audio_embeddings")

    print(save_section(results_dir, key, r))


def peer_section(model_dir: Path, raw: Path, audio_16k: Path, measured: list[str], args) -> dict:
    """The runtimes side by side on ``--peer-clips`` clips spread over the measured actors' (resampled if not yet)."""
    for actor in measured:
        if not (audio_16k / f"Actor_{actor}").is_dir():
            resample_actor(raw / f"Actor_{actor}", audio_16k / f"Actor_{actor}", ResampleConfig(), progress=False)
    paths = sorted(audio_16k.rglob("*.wav"))
    chosen = [paths[i] for i in np.linspace(0, len(paths) - 1, min(args.peer_clips, len(paths))).round().astype(int)]
    exact = SpeechEncoderEmbedder(EmbedConfig(str(model_dir)))
    fast = SpeechEncoderEmbedder(EmbedConfig(str(model_dir), mode="fast"))
    return measure_peers(exact, fast, [read_audio(p)[0] for p in chosen], args.peer_rounds, args.work / "onnx")


def render(key: str, r: dict) -> str:
    m = r["machine"]
    heading = [f"## CPU class {key}", "",
               f"{m['cpu']}{' (' + m['cpu_signature'] + ')' if m.get('cpu_signature') else ''}, {m['cores']} cores, {m['torch_threads']} torch threads, torch {m['torch']} "
               f"(kernels: {m['torch_kernels']}{', forced by ' + ' '.join(f'{k}={v}' for k, v in m['kernel_overrides'].items()) if m['kernel_overrides'] else ''}); "
               f"native bfloat16: {'yes' if m['native_bfloat16'] else 'no'}; "
               f"load average before the run {m.get('load_average_before', float('nan')):.1f}.", ""]
    body = render_throughput(key, r) if "throughput_audio_seconds_per_second" in r else []
    return "\n".join(heading + body + (render_peers(key, r["peers"]) if "peers" in r else [])) + "\n"


def render_peers(key: str, p: dict) -> list[str]:
    f, v, a = p["fidelity_to_torch_fp32"], p["vs_torch_fp32"], p["audio_seconds_per_second"]
    # Sections measured before embed.runtime existed ran both stages in torch.
    runtimes = p.get("runtimes", {"exact stage": "torch float32", "fast stage": "torch int8 + bfloat16"})
    what = {"torch fp32": "torch eager fp32 (pre-normalised input)",
            "exact stage": f"our exact stage, in {runtimes['exact stage']} (normalisation, forward, layer summaries)",
            "fast stage": f"our fast stage, in {runtimes['fast stage']} (the same)",
            "ONNX Runtime fp32": f"ONNX Runtime {p['versions'].get('onnxruntime')} fp32 (opset 17, all optimisations)",
            "ONNX Runtime int8": "ONNX Runtime dynamic int8 (MatMul)",
            "OpenVINO f32": f"OpenVINO {p['versions'].get('openvino', '').split('-')[0]} f32"}
    # Sections measured before the runtimes took turns pass by pass (benchmarks/peer_runtimes.py) have no "turns".
    turns = ("each runtime's clips back to back in its turn, the order rotating round by round"
             if p.get("turns") == "passes" else "the order rotating clip by clip")
    lines = [f"Runtimes side by side, CPU class {key}: {p['clips']} clips ({p['audio_seconds']:.0f} s of audio), "
             f"one at a time, {p['threads']} threads, {p['rounds']} rounds, {turns}; "
             "medians (of per-round ratios for the ratios).", "",
             "| runtime | s audio/s | vs torch fp32 | max abs diff to torch fp32 | mean (min) per-frame cosine |",
             "|---|---|---|---|---|"]
    lines += [f"| {what[name]} | {a[name]:.2f} | {v[name]:.2f} | {f[name]['max_abs_diff']:.1e} | "
              f"{f[name]['mean_cosine']:.5f} ({f[name]['min_cosine']:.5f}) |" for name in a]
    labels = {"exact_vs_onnxruntime_fp32": "exact stage / ONNX Runtime fp32", "fast_vs_exact": "fast stage / exact stage",
              "fast_vs_onnxruntime_int8": "fast stage / ONNX Runtime int8",
              "torch_fp32_vs_onnxruntime_fp32": "torch fp32 forward / ONNX Runtime fp32",
              "openvino_vs_torch_fp32": "OpenVINO f32 / torch fp32"}
    lines += ["", f"Speed ratios, CPU class {key} (above 1: the first is faster): " + "; ".join(
        f"{labels[name]} **{ratio:.2f}x**" for name, ratio in p["ratios"].items()) + "."]
    return lines + [""]


def render_throughput(key: str, r: dict) -> list[str]:
    t = r["throughput_audio_seconds_per_second"]
    g = r["achieved_gflops"]
    fp32, bf16 = r["matmul_gflops"]["float32"], r["matmul_gflops"]["bfloat16"]
    # Where bfloat16 is emulated (AVX2: 0.4 GFLOP/s), a percentage of it would mean nothing.
    fast_yardstick = (f" = {100 * g['fast_fraction_of_bf16_matmul']:.0f}% of bf16 matmul" if bf16
                      else " (no bf16 yardstick: no native bfloat16 on this CPU)")
    matmuls = f"{fp32:.1f} / {bf16:.1f} GFLOP/s" if bf16 else f"{fp32:.1f} GFLOP/s / not measured: no native bfloat16"
    lines = [
        f"Corpus: {r['corpus']['clips']} clips, {r['corpus']['audio_seconds'] / 60:.1f} min of audio; "
        f"throughput on {r['throughput_subset']['clips']} clips ({r['throughput_subset']['audio_seconds']:.0f} s), "
        f"median of {r['config']['rounds']} rounds. Model: {r['model']}.",
        "",
        f"| measure (CPU class {key}) | value |",
        "|---|---|",
        f"| naive loop (load, resample, fp32 forward, save per clip) | {t['naive']:.2f} s audio/s |",
        f"| embed stage, exact mode | {t['exact']:.2f} s audio/s ({t['exact'] / t['naive']:.2f}x naive) |",
        f"| embed stage, fast mode | {t['fast']:.2f} s audio/s ({t['fast'] / t['exact']:.2f}x exact) |",
        f"| exact, embed.layer=6 (blocks 7-12 not computed) | {t['exact_layer6']:.2f} s audio/s ({t['exact_layer6'] / t['exact']:.2f}x) |",
        f"| exact, float16 storage | {t['exact_float16_storage']:.2f} s audio/s |",
        f"| forward passes alone (the stage's runtimes), exact / fast | {t['forward_only_exact']:.2f} / {t['forward_only_fast']:.2f} s audio/s |",
        f"| fast vs exact, per-frame cosine | mean {r['fast_vs_exact_cosine']['mean']:.5f}, min {r['fast_vs_exact_cosine']['min']:.5f} |",
        f"| model cost | {r['flops_per_audio_second'] / 1e9:.2f} GFLOP per second of audio |",
        f"| matmul 3072^3, fp32 / bf16 | {matmuls} |",
        f"| achieved, exact stage / exact forward alone | {g['exact']:.1f} / {g['forward_only_exact']:.1f} GFLOP/s "
        f"= **{100 * g['exact_fraction_of_fp32_matmul']:.0f}%** / {100 * g['forward_fraction_of_fp32_matmul']:.0f}% of fp32 matmul |",
        f"| achieved, fast stage (fp32-equivalent FLOPs) | {g['fast']:.1f} GFLOP/s{fast_yardstick} |",
        f"| float16 storage | {r['float16_storage']['bytes_float16'] / r['float16_storage']['bytes_float32']:.3f}x the bytes; "
        f"max abs error {r['float16_storage']['max_abs_error']:.2e}, max relative {r['float16_storage']['max_relative_error']:.2e} |",
        f"| model load (base size), exact / fast | {r['model_load_seconds']['exact']:.2f} / {r['model_load_seconds']['fast']:.2f} s |",
    ]
    if "end_to_end" in r:
        e = r["end_to_end"]
        lines += [
            f"| download stage (synthesis of the corpus) | {r['download_seconds']:.1f} s |",
            f"| `dvc repro` after download, every stage | {e['dvc_repro_seconds_after_download']:.1f} s |",
            f"| pure forward time of the same audio, exact | {e['pure_forward_seconds']:.1f} s |",
            f"| ratio, whole `dvc repro` / forward | **{e['ratio']:.3f}** |",
            f"| ratio, data stages (resample, embed, label-manifest, with DVC's start-up) / forward | **{e['data_pipeline_ratio']:.3f}** |",
            f"| embed stage peak RSS, in-process (`RAVDESS_SER_WORKER=0`) | {r['embed_stage_peak_rss_mb']:.0f} MB |",
            f"| warm worker's peak RSS over the whole `dvc repro` | {r['worker_peak_rss_mb'] or float('nan'):.0f} MB |",
            f"| disk, all embeddings (float32, with layer summaries) | {r['disk_embeddings_bytes'] / 2**20:.0f} MiB |",
            "",
            "Breakdown of `dvc repro` after download:",
            "",
            "| part | seconds |",
            "|---|---|",
            *[f"| {name} | {seconds:.1f} |" for name, seconds in e["breakdown_seconds"].items()],
        ]
    return lines + ["", f"FLOPs: {r['flop_counting']}.", ""]


if __name__ == "__main__":
    main()
