"""exp, log2, sin and cos whose float64 results are the same on every x86-64 CPU.

numpy picks its float64 ``exp``, ``log2`` and ``power`` kernels at run time from
the CPU's instruction set, and its AVX-512 kernels differ from the AVX2 ones in
the last bit (measured with numpy 2.4.6: ``NPY_DISABLE_CPU_FEATURES=X86_V4``
changes all three). In the synthetic corpus such a bit can decide where a
glottal cycle starts, so one CPU class wrote different PCM for a whole actor.

These use only ``+ - * /``, ``rint``, ``frexp`` and ``ldexp``: IEEE 754 rounds
each of them exactly, so every vector width gives the same bits. Accuracy is a
few ulp, plenty for synthesis; use them wherever a float decides a PCM sample.
"""

from __future__ import annotations

import math

import numpy as np

# Cody-Waite splits: the high parts have trailing zero bits, so k * HI is exact for the k that occur here.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_HALF_PI_HI = 1.57079632673412561417e00
_HALF_PI_LO = 6.07710050650619224932e-11
_LN10 = 2.302585092994045684018
_SQRT_HALF = 0.70710678118654752440

_EXP_TERMS = [1.0 / math.factorial(n) for n in range(15)]  # |r| <= ln2/2: the r**14 term is below 1e-17
_SIN_TERMS = [(-1.0) ** n / math.factorial(2 * n + 1) for n in range(9)]  # |r| <= pi/4
_COS_TERMS = [(-1.0) ** n / math.factorial(2 * n) for n in range(10)]
_ATANH_TERMS = [1.0 / (2 * n + 1) for n in range(12)]  # |s| <= 0.172


def _poly(x: np.ndarray, coefficients: list[float]) -> np.ndarray:
    result = np.full_like(x, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        result = result * x + c  # two roundings, never a fused multiply-add
    return result


def exp(x) -> np.ndarray:
    x = np.clip(np.asarray(x, dtype=np.float64), -745.0, 709.0)
    k = np.rint(x / _LN2_HI)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    return np.ldexp(_poly(r, _EXP_TERMS), k.astype(np.int32))


def log(x) -> np.ndarray:
    """Natural log of positive values."""
    mantissa, exponent = np.frexp(np.asarray(x, dtype=np.float64))
    low = mantissa < _SQRT_HALF
    mantissa = np.where(low, mantissa * 2.0, mantissa)
    exponent = (exponent - low).astype(np.float64)
    s = (mantissa - 1.0) / (mantissa + 1.0)
    return 2.0 * s * _poly(s * s, _ATANH_TERMS) + (exponent * _LN2_HI + exponent * _LN2_LO)


def log2(x) -> np.ndarray:
    return log(x) / (_LN2_HI + _LN2_LO)


def exp2(x) -> np.ndarray:
    return exp(np.asarray(x, dtype=np.float64) * (_LN2_HI + _LN2_LO))


def exp10(x) -> np.ndarray:
    """10 ** x, e.g. a decibel value's amplitude: ``exp10(db / 20)``."""
    return exp(np.asarray(x, dtype=np.float64) * _LN10)


def _sin_cos_reduced(x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    k = np.rint(x / (_HALF_PI_HI + _HALF_PI_LO))
    r = (x - k * _HALF_PI_HI) - k * _HALF_PI_LO
    r2 = r * r
    return r * _poly(r2, _SIN_TERMS), _poly(r2, _COS_TERMS), np.mod(k, 4.0)


def sin(x) -> np.ndarray:
    s, c, quadrant = _sin_cos_reduced(x)
    return np.select([quadrant == 0, quadrant == 1, quadrant == 2], [s, c, -s], -c)


def cos(x) -> np.ndarray:
    s, c, quadrant = _sin_cos_reduced(x)
    return np.select([quadrant == 0, quadrant == 1, quadrant == 2], [c, -s, -c], s)
