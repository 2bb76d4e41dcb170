"""The benchmark's own logic: the CPU class it files figures under, and the interleaving its ratios rest on."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from peer_runtimes import interleaved_seconds, median_ratio  # noqa: E402
from ravdess_ser.cpu import NATIVE_BFLOAT16, cpu_class, cpu_signature, first_processor  # noqa: E402


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


def test_the_cpu_signature_is_the_first_processors_vendor_family_and_model():
    cpuinfo = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n"
               "flags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n"
               "cpu family\t: 6\nmodel\t\t: 143\n\n")
    fields = first_processor(cpuinfo)
    assert cpu_signature(fields) == "AuthenticAMD family 26 model 2"
    assert cpu_class(set(fields["flags"].split())) == "AVX512-BF16"
    assert cpu_signature({"vendor_id": "AuthenticAMD"}) is None  # e.g. an ARM /proc/cpuinfo: no family


def test_interleaving_runs_every_clip_once_per_round_and_rotates_who_goes_first():
    calls = []
    runners = {name: (lambda clip, name=name: calls.append((name, int(clip[0]), len(clip)))) for name in "abc"}
    inputs = {name: [np.full(10_000 + index, index) for index in range(4)] for name in "abc"}
    seconds = interleaved_seconds(runners, inputs, rounds=2)
    assert [call[:2] for call in calls[:3]] == [("a", 0), ("b", 0), ("c", 0)]  # the untimed warm-up
    timed = [call[:2] for call in calls[3:]]
    assert len(timed) == 2 * 4 * 3 and all(timed.count((n, i)) == 2 for n in "abc" for i in range(4))
    for name in "abc":  # no runner meets a length twice, the warm-up's included
        lengths = [length for runner, _, length in calls if runner == name]
        assert len(set(lengths)) == len(lengths) == 1 + 2 * 4
    firsts = [timed[k][0] for k in range(0, len(timed), 3)]
    assert firsts == ["a", "b", "c", "a"] * 2
    assert {name: len(s) for name, s in seconds.items()} == {"a": 2, "b": 2, "c": 2}


def test_median_ratio_is_the_median_of_per_round_ratios():
    seconds = {"fast": [1.0, 2.0, 1.0], "slow": [2.0, 2.0, 3.0]}  # per round: 2x, 1x, 3x
    assert median_ratio(seconds, "fast", "slow") == 2.0
    assert median_ratio(seconds, "slow", "fast") == 0.5
