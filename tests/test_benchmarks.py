"""The benchmark's own logic: the CPU class it files figures under, and the interleaving its ratios rest on."""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import REPO_ROOT
from embed_benchmark import benchmark_params, frame_files
from peer_runtimes import alternating_passes, median_ratio
from ravdess_ser.cpu import (CPU_CLASSES, NATIVE_BFLOAT16, cpu_class, cpu_flags, cpu_signature, first_processor,
                             visible_flags)


@pytest.mark.parametrize("flags, expected", [
    ({"sse2", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "AMX"),
    ({"avx2", "avx512f", "avx512_bf16"}, "AVX512-BF16"),  # e.g. AMD Zen 4
    ({"avx2", "avx512f", "avx512_vnni"}, "AVX-512"),
    ({"avx2", "fma"}, "AVX2"),  # e.g. AMD Zen 3
    ({"sse2"}, "other"),
])
def test_cpu_class_is_the_widest_flag_present(flags, expected):
    assert cpu_class(flags) == expected


def test_only_amx_and_avx512_bf16_count_as_native_bfloat16():
    assert {cpu_class(f) for f in ({"avx2"}, {"avx512f"})}.isdisjoint(NATIVE_BFLOAT16)
    assert {cpu_class({"amx_bf16"}), cpu_class({"avx512_bf16"})} == set(NATIVE_BFLOAT16)


@pytest.mark.skipif("RAVDESS_SER_CPU_MASK" in os.environ, reason="the suite runs under benchmarks/cpu_mask.py")
def test_without_a_mask_programs_see_the_class_proc_cpuinfo_lists():
    """The class comes from CPUID as numpy asked it (so benchmarks/cpu_mask.py can narrow it): with nothing hidden,
    the same flags as /proc/cpuinfo's."""
    assert visible_flags() == set(CPU_CLASSES) & cpu_flags()[1]
    assert cpu_class() == cpu_class(cpu_flags()[1])


def test_the_cpu_signature_is_the_first_processors_vendor_family_and_model():
    cpuinfo = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n"
               "flags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n"
               "cpu family\t: 6\nmodel\t\t: 143\n\n")
    fields = first_processor(cpuinfo)
    assert cpu_signature(fields) == "AuthenticAMD family 26 model 2"
    assert cpu_class(set(fields["flags"].split())) == "AVX512-BF16"
    assert cpu_signature({"vendor_id": "AuthenticAMD"}) is None  # e.g. an ARM /proc/cpuinfo: no family


def test_each_round_is_a_pass_of_every_runner_over_every_clip_and_the_order_rotates():
    calls = []
    runners = {name: (lambda clips, name=name: [calls.append((name, int(clip[0]), len(clip))) for clip in clips])
               for name in "abc"}
    inputs = {name: [np.full(10_000 + index, index) for index in range(4)] for name in "abc"}
    seconds = alternating_passes(runners, inputs, rounds=4)
    assert [call[:2] for call in calls[:3]] == [("a", 0), ("b", 0), ("c", 0)]  # the untimed warm-up
    timed = [call[:2] for call in calls[3:]]
    passes = [timed[k:k + 4] for k in range(0, len(timed), 4)]
    assert len(passes) == 4 * 3
    for one in passes:  # a runner's turn: every clip, back to back, in order
        assert [clip for _, clip in one] == [0, 1, 2, 3] and len({runner for runner, _ in one}) == 1
    order = [one[0][0] for one in passes]
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    for name in "abc":  # no runner meets a length twice, the warm-up's included
        lengths = [length for runner, _, length in calls if runner == name]
        assert len(set(lengths)) == len(lengths) == 1 + 4 * 4
    assert {name: len(s) for name, s in seconds.items()} == {"a": 4, "b": 4, "c": 4}


def test_median_ratio_is_the_median_of_per_round_ratios():
    seconds = {"fast": [1.0, 2.0, 1.0], "slow": [2.0, 2.0, 3.0]}  # per round: 2x, 1x, 3x
    assert median_ratio(seconds, "fast", "slow") == 2.0
    assert median_ratio(seconds, "slow", "fast") == 0.5


def test_the_fidelity_figures_compare_frames_not_layer_summaries(tmp_path):
    for path in ("Actor_01/a.npy", "Actor_01/layer_summary/a.npy", "Actor_02/b.npy", "Actor_02/layer_summary/b.npy"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / path, np.zeros((2, 3), np.float32))
    assert [p.relative_to(tmp_path).as_posix() for p in frame_files(tmp_path)] == ["Actor_01/a.npy", "Actor_02/b.npy"]


@pytest.mark.parametrize("actors", [3, 24])
def test_the_benchmark_projects_train_params_make_a_protocol(actors):
    """The benchmark's dvc repro trains too: its params must pass the train stage's checks."""
    import yaml

    from ravdess_ser.train_config import TrainConfig

    chosen = [f"{a:02d}" for a in range(1, actors + 1)]
    train = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["train"]
    config = TrainConfig(**train | benchmark_params(chosen, 3.7, "model").get("train", {}))
    protocol = config.resolved_protocol
    assert {actor for fold in protocol.folds for actor in fold.test_actors} == set(range(1, actors + 1))
    assert config.fold in {fold.name for fold in protocol.folds}
