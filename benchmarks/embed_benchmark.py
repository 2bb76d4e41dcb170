"""How close the embed stage runs to what this machine allows, and what the pipeline costs around it.

Everything is measured in one run on one machine, so the ratios hold even if
the machine is slower or busier than another:

1. throughput (seconds of audio per second) of a naive per-clip loop in the
   style of research notes, of the embed stage in exact mode and in fast mode,
   and of exact mode with a shallow layer;
2. achieved GFLOP/s against a large fp32 and bf16 matmul;
3. `dvc repro` over the whole corpus against the pure forward-pass time of
   the same audio, with the rest broken down;
4. peak RSS of an embed stage, and disk used by float32 and float16 embeddings.

The model has wav2vec2-base's architecture (``Wav2Vec2Config()`` defaults) with
random weights: the same FLOPs as facebook/wav2vec2-base, and no download.

    python benchmarks/embed_benchmark.py                 # full: 24 actors x 60 clips of ~3.7 s
    python benchmarks/embed_benchmark.py --actors 2      # a quick look

Results go to benchmarks/results/embed_benchmark.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from dvc_project import dvc, make_project, stages_run  # noqa: E402

from ravdess_ser.audio import ResampleConfig, read_audio, resample, resample_actor  # noqa: E402
from ravdess_ser.embed import EmbedConfig, Wav2Vec2Embedder, embed_actor  # noqa: E402
from ravdess_ser.models import save_random_wav2vec2  # noqa: E402
from ravdess_ser.ravdess import actor_dirname  # noqa: E402
from ravdess_ser.synthetic import generate_corpus  # noqa: E402


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


def forward_only(embedder: Wav2Vec2Embedder, clips: list[np.ndarray]) -> float:
    """Pure model time: normalised inputs prepared beforehand, only the forward passes timed."""
    inputs = [torch.from_numpy(embedder._normalise(clip)).unsqueeze(0) for clip in clips]
    with torch.inference_mode():
        embedder.model(inputs[0])
        start = time.perf_counter()
        for values in inputs:
            embedder.model(values)
    return time.perf_counter() - start


def timed_embed(config: EmbedConfig, audio_dir: Path, out_dir: Path) -> tuple[float, float]:
    """(model load seconds, embed_actor seconds)."""
    start = time.perf_counter()
    embedder = Wav2Vec2Embedder(config)
    loaded = time.perf_counter()
    embed_actor(embedder, audio_dir, out_dir, progress=False)
    return loaded - start, time.perf_counter() - loaded


def cosine_per_frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*.npy"))


def stage_peak_rss(project: Path, actor: str) -> float:
    """Peak RSS in MB of one embed stage run in-process (the worker holds the same model and buffers).

    Measured from a fresh parent whose only child is the stage: RUSAGE_CHILDREN reports the largest
    child a process ever waited for, which in this script would include dvc and the train stage.
    """
    env = dict(os.environ, RAVDESS_SER_WORKER="0", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    probe = ("import resource, subprocess, sys; "
             f"subprocess.run([sys.executable, 'stages/embed.py', 'data/audio_16k/Actor_{actor}', "
             "'/tmp/rss-probe-embeddings'], check=True, capture_output=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=project, env=env, check=True, capture_output=True, text=True)
    shutil.rmtree("/tmp/rss-probe-embeddings", ignore_errors=True)
    return int(out.stdout.split()[-1]) / 1024


def client_start_seconds(project: Path) -> float:
    """A stage client's own cost: interpreter start, imports, params; its job runs in the warm worker."""
    return best_of(3, lambda: subprocess.run([sys.executable, "stages/embed.py", "--help"], cwd=project,
                                             check=True, capture_output=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actors", type=int, default=24, help="actors in the corpus (3 to 24; each has 60 clips)")
    parser.add_argument("--clip-seconds", type=float, default=3.7, help="mean clip length (RAVDESS: about 3.7 s)")
    parser.add_argument("--throughput-actors", type=int, default=2, help="actors whose clips time the three modes")
    parser.add_argument("--skip-dvc", action="store_true", help="skip the end-to-end `dvc repro`")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ravdess-ser-benchmark"))
    args = parser.parse_args()

    results_dir = REPO_ROOT / "benchmarks" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.work, ignore_errors=True)
    actors = [f"{a:02d}" for a in range(1, args.actors + 1)]
    r: dict = {"machine": {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                           "torch": torch.__version__}, "config": vars(args) | {"work": str(args.work)}}

    # The project the end-to-end run uses; its corpus and model serve every other measurement too.
    params = {"data": {"actors": actors, "synthetic_clip_seconds": args.clip_seconds},
              "embed": {"model": "models/wav2vec2-base-random"}}
    if args.actors < 24:  # the default folds need all 24 actors
        params["train"] = {"folds": {str(a): [a] for a in range(1, args.actors + 1)}, "fold": str(args.actors)}
    project = make_project(args.work / "project", params)
    model_dir = save_random_wav2vec2(project / "models" / "wav2vec2-base-random")
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(["git", "commit", "-qm", "base-size random model"], cwd=project, check=True)

    start = time.perf_counter()
    dvc(project, "repro", "download")
    r["download_seconds"] = time.perf_counter() - start
    raw = project / "data" / "raw"
    audio_seconds = sum(sf.info(p).duration for p in raw.rglob("*.wav"))
    r["corpus"] = {"clips": len(list(raw.rglob("*.wav"))), "audio_seconds": audio_seconds}

    # 2. the machine's limit, and the model's cost
    r["matmul_gflops"] = {"float32": matmul_gflops(torch.float32), "bfloat16": matmul_gflops(torch.bfloat16)}
    r["flops_per_audio_second"], r["flop_counting"] = flops_per_audio_second(model_dir)

    # 1. throughput on the clips of the first actors
    bench = args.work / "throughput"
    subset = [p for a in actors[: args.throughput_actors] for p in sorted((raw / actor_dirname(int(a))).glob("*.wav"))]
    subset_seconds = sum(sf.info(p).duration for p in subset)
    r["throughput_subset"] = {"clips": len(subset), "audio_seconds": subset_seconds}
    naive = naive_loop(subset, model_dir, bench / "naive")
    resample_seconds = 0.0
    audio_16k = bench / "16k"
    for actor in actors[: args.throughput_actors]:
        start = time.perf_counter()
        resample_actor(raw / f"Actor_{actor}", audio_16k / f"Actor_{actor}", ResampleConfig(), progress=False)
        resample_seconds += time.perf_counter() - start
    modes = {"exact": EmbedConfig(str(model_dir)), "fast": EmbedConfig(str(model_dir), mode="fast"),
             "exact_layer6": EmbedConfig(str(model_dir), layer=6),
             "exact_float16_storage": EmbedConfig(str(model_dir), storage="float16")}
    timing: dict[str, float] = {"naive": naive}
    load_seconds = 0.0
    for name, config in modes.items():
        total = 0.0
        for actor in actors[: args.throughput_actors]:
            load_seconds, seconds = timed_embed(config, audio_16k / f"Actor_{actor}", bench / name / actor)
            total += seconds
        timing[name] = total
    clips_16k = [read_audio(p)[0] for a in actors[: args.throughput_actors] for p in sorted((audio_16k / f"Actor_{a}").glob("*.wav"))]
    timing["forward_only"] = forward_only(Wav2Vec2Embedder(modes["exact"]), clips_16k)
    r["throughput_audio_seconds_per_second"] = {name: subset_seconds / seconds for name, seconds in timing.items()}
    r["model_load_seconds"] = load_seconds

    exact_files = sorted((bench / "exact").rglob("*.npy"))
    cosines = np.concatenate([cosine_per_frame(np.load(p), np.load(bench / "fast" / p.relative_to(bench / "exact")))
                              for p in exact_files])
    float16 = [np.load(bench / "exact_float16_storage" / p.relative_to(bench / "exact")).astype(np.float32) for p in exact_files]
    float32 = [np.load(p) for p in exact_files]
    r["fast_vs_exact_cosine"] = {"mean": float(cosines.mean()), "min": float(cosines.min())}
    r["float16_storage"] = {
        "max_abs_error": float(max(np.abs(a - b).max() for a, b in zip(float16, float32))),
        "max_relative_error": float(max((np.abs(a - b) / np.maximum(np.abs(b), 1e-6)).max() for a, b in zip(float16, float32))),
        "bytes_float32": folder_bytes(bench / "exact"), "bytes_float16": folder_bytes(bench / "exact_float16_storage"),
    }
    exact_gflops = r["throughput_audio_seconds_per_second"]["exact"] * r["flops_per_audio_second"] / 1e9
    forward_gflops = r["throughput_audio_seconds_per_second"]["forward_only"] * r["flops_per_audio_second"] / 1e9
    r["achieved_gflops"] = {"exact_stage": exact_gflops, "forward_only": forward_gflops,
                            "fraction_of_fp32_matmul": exact_gflops / r["matmul_gflops"]["float32"],
                            "forward_fraction_of_fp32_matmul": forward_gflops / r["matmul_gflops"]["float32"]}
    per_audio_second = {"resample": resample_seconds / subset_seconds,
                        "file_io_and_normalisation": (timing["exact"] - timing["forward_only"]) / subset_seconds,
                        "forward": timing["forward_only"] / subset_seconds}

    # 3. and 4. end to end
    if not args.skip_dvc:
        start = time.perf_counter()
        result = dvc(project, "repro")
        e2e = time.perf_counter() - start
        assert "embed@01" in stages_run(result.stdout)
        forward = per_audio_second["forward"] * audio_seconds
        client = client_start_seconds(project)
        parts = {
            "forward passes (scaled from the subset)": forward,
            "resampling (scaled)": per_audio_second["resample"] * audio_seconds,
            "file I/O and input normalisation (scaled)": per_audio_second["file_io_and_normalisation"] * audio_seconds,
            f"stage clients: {2 * len(actors)} x {client:.2f} s start-up": 2 * len(actors) * client,
            "worker start-up and one model load (measured once)": load_seconds,
        }
        parts["label-manifest, train, DVC itself (the rest)"] = e2e - sum(parts.values())
        r["end_to_end"] = {"dvc_repro_seconds_after_download": e2e, "pure_forward_seconds": forward,
                           "ratio": e2e / forward, "breakdown_seconds": parts}
        r["embed_stage_peak_rss_mb"] = stage_peak_rss(project, actors[0])
        r["disk_embeddings_bytes"] = folder_bytes(project / "experiments" / "audio_embeddings")

    (results_dir / "embed_benchmark.json").write_text(json.dumps(r, indent=2) + "\n")
    table = render(r)
    (results_dir / "embed_benchmark.md").write_text(table)
    print(table)


def render(r: dict) -> str:
    t = r["throughput_audio_seconds_per_second"]
    lines = [
        f"Corpus: {r['corpus']['clips']} clips, {r['corpus']['audio_seconds'] / 60:.1f} min of audio; "
        f"throughput on {r['throughput_subset']['clips']} clips ({r['throughput_subset']['audio_seconds']:.0f} s). "
        f"{r['machine']['cores']} cores, torch {r['machine']['torch']}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| naive loop (load, resample, fp32 forward, save per clip) | {t['naive']:.2f} s audio/s |",
        f"| embed stage, exact mode | {t['exact']:.2f} s audio/s ({t['exact'] / t['naive']:.2f}x naive) |",
        f"| embed stage, fast mode (bf16 autocast) | {t['fast']:.2f} s audio/s ({t['fast'] / t['exact']:.2f}x exact) |",
        f"| exact, embed.layer=6 (blocks 7-12 not computed) | {t['exact_layer6']:.2f} s audio/s ({t['exact_layer6'] / t['exact']:.2f}x) |",
        f"| forward passes alone, exact | {t['forward_only']:.2f} s audio/s |",
        f"| fast vs exact, per-frame cosine | mean {r['fast_vs_exact_cosine']['mean']:.4f}, min {r['fast_vs_exact_cosine']['min']:.4f} |",
        f"| model cost | {r['flops_per_audio_second'] / 1e9:.2f} GFLOP per second of audio |",
        f"| matmul 3072^3, fp32 / bf16 | {r['matmul_gflops']['float32']:.1f} / {r['matmul_gflops']['bfloat16']:.1f} GFLOP/s |",
        f"| achieved, exact stage / forward alone | {r['achieved_gflops']['exact_stage']:.1f} / {r['achieved_gflops']['forward_only']:.1f} GFLOP/s "
        f"= {100 * r['achieved_gflops']['fraction_of_fp32_matmul']:.0f}% / {100 * r['achieved_gflops']['forward_fraction_of_fp32_matmul']:.0f}% of fp32 matmul |",
        f"| float16 storage | {r['float16_storage']['bytes_float16'] / r['float16_storage']['bytes_float32']:.3f}x the bytes; "
        f"max abs error {r['float16_storage']['max_abs_error']:.2e}, max relative {r['float16_storage']['max_relative_error']:.2e} |",
        f"| model load (base size) | {r['model_load_seconds']:.2f} s |",
    ]
    if "end_to_end" in r:
        e = r["end_to_end"]
        lines += [
            f"| download stage (synthesis of the corpus) | {r['download_seconds']:.1f} s |",
            f"| `dvc repro` after download | {e['dvc_repro_seconds_after_download']:.1f} s |",
            f"| pure forward time of the same audio | {e['pure_forward_seconds']:.1f} s |",
            f"| ratio | **{e['ratio']:.3f}** |",
            f"| embed stage peak RSS | {r['embed_stage_peak_rss_mb']:.0f} MB |",
            f"| disk, all embeddings (float32) | {r['disk_embeddings_bytes'] / 2**20:.0f} MiB |",
            "",
            "Breakdown of `dvc repro` after download:",
            "",
            "| part | seconds |",
            "|---|---|",
            *[f"| {name} | {seconds:.1f} |" for name, seconds in e["breakdown_seconds"].items()],
        ]
    lines += ["", f"FLOPs: {r['flop_counting']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
