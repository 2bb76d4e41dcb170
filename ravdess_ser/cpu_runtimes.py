"""The embed stage's CPU runtimes: the loaded model exported to ONNX once, run by ONNX Runtime or OpenVINO.

On the CPU the same model runs faster outside torch's eager mode (docs/performance.md has the figures, by CPU
class), so with ``embed.runtime: auto`` the stage runs, on the CPU:

- exact mode in ONNX Runtime, float32, each clip alone, as many clips in flight as there are threads, each on one
  thread (the record's ``clips_in_flight``): 1.08x one clip on 2 threads on the Zen 4 EPYC, with the same frames,
  bit for bit, there;
- fast mode in ONNX Runtime with int8 MatMuls (dynamic quantisation, activations quantised per clip); where
  the CPU has native bfloat16, the feature encoder runs before it in torch, bfloat16 channels-last
  (:data:`ONNXRUNTIME_SPLIT`: 1.20x ONNX Runtime's int8 alone on the AVX512-BF16 EPYC), with as many clips in
  flight as there are threads, each on one thread and still computed alone (the record's ``clips_in_flight``):
  the split's handovers between torch and ONNX Runtime leave 2 threads idle part of the time, and one thread
  per clip gave the same frames, bit for bit, 1.34x faster on the Zen 5 EPYC.

OpenVINO (``embed.runtime: openvino``: float32, or bfloat16 in fast mode where the CPU has it natively) is not
auto's choice: it prepares its kernels anew for every input length it has not seen, and the stage meets every
clip's length once, so with fresh lengths it measured slower than ONNX Runtime on the AMX Xeon (exact 0.86x,
bfloat16 0.67x ONNX Runtime's int8; benchmarks/results/embed_benchmark.md).

Every runtime is checked when it is loaded, against torch's float32 forward pass on a trial clip whose length
differs from the export's example (so a length the trace baked in would show): exact mode's frames must be
within :data:`EXACT_MAX_ABS_DIFF` of torch's, fast mode's mean per-frame cosine at least
:data:`FAST_MIN_COSINE`. A runtime that fails the check, or cannot take the model, gives way to the next
candidate (ONNX Runtime, then torch) with a log line saying why. A runtime the user pinned
(``embed.runtime: onnxruntime`` or ``openvino``) has no fallback: it runs, or the stage stops in one line.
What ran, and its check's figure, go to each actor's ``runtime.json``.

The ONNX export (opset :data:`OPSET`, the TorchScript exporter) costs seconds for wav2vec2-base, so it is
cached per user, in ``$RAVDESS_SER_CACHE`` (default ``$XDG_CACHE_HOME/ravdess-ser``, else
``~/.cache/ravdess-ser``), under ``onnx/<hash>``, where the hash covers everything the graph is made from:
the weights' bytes, the model's config and attention implementation, the outputs asked for, the versions of
torch and transformers and the source of this module and of :mod:`ravdess_ser.embed`. An entry is written
into a locked temporary folder and renamed into place, so a killed export leaves nothing that the next one
would read, and the next one removes it. A cache folder that is not a private folder of the user's own is
not used: the export then goes to a private temporary folder, and is made again next time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from ravdess_ser.atomic import atomic_dir
from ravdess_ser.cpu import NATIVE_BFLOAT16, cpu_class
from ravdess_ser.embed import RUNTIMES
from ravdess_ser.errors import PipelineError

log = logging.getLogger(__name__)

OPSET = 17
EXACT_MAX_ABS_DIFF = 1e-4
FAST_MIN_COSINE = 0.999

# A runtime run: the model's one input as a numpy array in, its outputs (the hidden layers asked for) out.
Run = Callable[[np.ndarray], list[np.ndarray]]


@dataclass(frozen=True)
class Runtime:
    """One way to run the model: a runtime and the precision it computes in."""

    name: str  # torch, onnxruntime or openvino
    precision: str  # float32, int8 (linear layers / MatMuls) or bfloat16

    def __str__(self) -> str:
        return f"{self.name} {self.precision}"


TORCH_EXACT, TORCH_FAST = Runtime("torch", "float32"), Runtime("torch", "int8 + bfloat16")
ONNXRUNTIME_EXACT, ONNXRUNTIME_FAST = Runtime("onnxruntime", "float32"), Runtime("onnxruntime", "int8")
# Fast mode's first choice where the CPU has native bfloat16: the feature encoder in torch (bfloat16 channels-last
# convolutions, ravdess_ser.fast_mode), the rest of the model in ONNX Runtime with int8 MatMuls.
ONNXRUNTIME_SPLIT = Runtime("onnxruntime", "int8, feature encoder bfloat16 in torch")
OPENVINO_EXACT, OPENVINO_FAST = Runtime("openvino", "float32"), Runtime("openvino", "bfloat16")


def runtime_candidates(requested: str, mode: str, device_type: str, cpu: str | None = None,
                       feature_encoder: bool = False) -> list[Runtime]:
    """The runtimes to try, best first, for ``embed.runtime`` = ``requested`` in ``mode`` on this device and
    CPU class (default: this machine's), for a model with a wav2vec2-style feature encoder if ``feature_encoder``."""
    if device_type != "cpu":
        if requested not in ("auto", "torch"):
            raise PipelineError(f"embed.runtime={requested} runs on the CPU only, and embed.device is "
                                f"{device_type}; use auto or torch (allowed: {', '.join(RUNTIMES)})")
        return [TORCH_EXACT if mode == "exact" else TORCH_FAST]
    native_bfloat16 = (cpu or cpu_class()) in NATIVE_BFLOAT16
    if requested == "openvino" and mode == "fast" and not native_bfloat16:
        raise PipelineError("embed.runtime=openvino with embed.mode=fast needs a CPU with native bfloat16 "
                            "(AVX512-BF16 or AMX), and this one has none; use auto (ONNX Runtime int8 here), "
                            "onnxruntime or torch")
    exact = mode == "exact"
    split = [ONNXRUNTIME_SPLIT] if feature_encoder and native_bfloat16 else []
    return {
        "auto": [ONNXRUNTIME_EXACT, TORCH_EXACT] if exact else [*split, ONNXRUNTIME_FAST, TORCH_FAST],
        "torch": [TORCH_EXACT if exact else TORCH_FAST],
        "onnxruntime": [ONNXRUNTIME_EXACT if exact else ONNXRUNTIME_FAST],
        "openvino": [OPENVINO_EXACT if exact else OPENVINO_FAST],
    }[requested]


class ForwardModule(torch.nn.Module):
    """``model`` with a function of it, ``forward(model, {input_name: tensor})``, as its forward pass: what the
    exporter traces."""

    def __init__(self, model: torch.nn.Module, forward: Callable, input_name: str):
        super().__init__()
        self.model, self._forward, self.input_name = model, forward, input_name

    def forward(self, values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self._forward(self.model, {self.input_name: values}))


class FeaturesIn(torch.nn.Module):
    """What stands in for a model's feature encoder in the export of the rest of it (:data:`ONNXRUNTIME_SPLIT`):
    it takes the encoder's output laid out ``(N, frames, C)``, as the channels-last encoder leaves it in memory,
    and hands it on ``(N, C, frames)``, as the encoder would."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.transpose(1, 2)


@contextlib.contextmanager
def _feature_encoder_outside(model: torch.nn.Module):
    encoder = model.feature_extractor
    model.feature_extractor = FeaturesIn()
    try:
        yield
    finally:
        model.feature_extractor = encoder


def encoded_features(encoder: torch.nn.Module, values: np.ndarray) -> np.ndarray:
    """``encoder``'s output on ``values`` as :class:`FeaturesIn` takes it: ``(N, frames, C)`` float32."""
    with torch.inference_mode():
        return np.ascontiguousarray(encoder(torch.from_numpy(values)).transpose(1, 2).numpy())


def export_key(model: torch.nn.Module, input_name: str, dynamic: bool, outputs: int) -> str:
    """The hash of everything an export of ``model`` is made from (see the module's docstring)."""
    digest = hashlib.sha256()
    sources = [Path(__file__), Path(__file__).with_name("embed.py")]
    digest.update(json.dumps({
        "opset": OPSET, "torch": torch.__version__, "transformers": metadata.version("transformers"),
        "config": model.config.to_dict(), "attention": getattr(model.config, "_attn_implementation", None),
        "input": input_name, "dynamic": dynamic, "outputs": outputs,
        "sources": [hashlib.sha256(path.read_bytes()).hexdigest() for path in sources],
    }, sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(np.ascontiguousarray(tensor.detach().cpu().numpy()).data)
    return digest.hexdigest()[:32]


def export_onnx(module: torch.nn.Module, example: np.ndarray, input_name: str, dynamic: bool, outputs: int,
                path: Path) -> None:
    """``module`` (numpy input in, ``outputs`` tensors out) as ONNX at ``path``; axis 1 of the input and of
    every output dynamic if ``dynamic``."""
    names = [f"layer_{k}" for k in range(outputs)]
    axes = {input_name: {1: "samples"}} | {name: {1: "frames"} for name in names} if dynamic else None
    with warnings.catch_warnings(), torch.inference_mode():
        # The TorchScript exporter is deprecated in torch 2.11, and the dynamo one needs onnxscript, one pin more.
        # Its tracer warns that transformers' is_causal test becomes a constant: False for an encoder, always.
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.from_numpy(example),), str(path), dynamo=False,
                          opset_version=OPSET, input_names=[input_name], output_names=names, dynamic_axes=axes)


def _private_cache() -> Path | None:
    """The user's ONNX cache folder, made if need be; None if it is not a folder of the user's own that only
    they can write to (then nothing is cached)."""
    root = os.environ.get("RAVDESS_SER_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or
                                                         Path.home() / ".cache") / "ravdess-ser"
    folder = Path(root) / "onnx"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(folder)
    except OSError as error:
        log.warning("embed: the ONNX cache %s cannot be used (%s); exporting without it", folder, error)
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        log.warning("embed: the ONNX cache %s is not a private folder of this user's (owner uid %d, mode %o); "
                    "exporting without it", folder, info.st_uid, stat.S_IMODE(info.st_mode))
        return None
    return folder


@contextlib.contextmanager
def exported_model(module: torch.nn.Module, key: str, example: np.ndarray, input_name: str, dynamic: bool,
                   outputs: int, quantised: bool):
    """Yield the path of ``module``'s ONNX file (with int8 MatMuls if ``quantised``), from the cache or new."""
    cache = _private_cache()
    with contextlib.ExitStack() as stack:
        if cache is None:
            cache = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ravdess-ser-onnx-")))
        float_entry = cache / f"{key}-float32"
        if not (float_entry / "model.onnx").is_file():
            with atomic_dir(float_entry) as tmp:
                export_onnx(module, example, input_name, dynamic, outputs, tmp / "model.onnx")
        if not quantised:
            yield float_entry / "model.onnx"
            return
        int8_entry = cache / f"{key}-int8"
        if not (int8_entry / "model.onnx").is_file():
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # The quantiser logs a line per tensor at INFO on the root logger, which the stage's log shows, and a
            # warning that pre-processing (shape inference, for static quantisation) may help: not for dynamic.
            with atomic_dir(int8_entry) as tmp, _root_logger_quiet():
                quantize_dynamic(float_entry / "model.onnx", tmp / "model.onnx", op_types_to_quantize=["MatMul"],
                                 weight_type=QuantType.QInt8)
        yield int8_entry / "model.onnx"


@contextlib.contextmanager
def _root_logger_quiet():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def onnxruntime_run(path: Path, threads: int, spinning: bool = True) -> Run:
    """A session on ``path``; with ``spinning`` off its idle threads sleep at once instead of spinning for the
    next run, which they would otherwise take the cores from torch's threads with."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise here
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda values: session.run(None, {name: values})


def openvino_run(path: Path, threads: int, precision: str) -> Run:
    import openvino

    compiled = openvino.Core().compile_model(str(path), "CPU", {
        "INFERENCE_PRECISION_HINT": {"float32": "f32", "bfloat16": "bf16"}[precision],
        "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()

    def run(values: np.ndarray) -> list[np.ndarray]:
        results = request.infer([values])
        # The request's output tensors are reused by its next inference: copy them out.
        return [np.array(results[output]) for output in compiled.outputs]
    return run


def describe(record: dict) -> str:
    """One line of what ran, from a :func:`load_runtime` record."""
    # Five decimals for the cosine: its floor is 0.999, and three significant digits print 0.9996 as "1".
    figures = [f"{key.removesuffix('_to_torch_float32').replace('_', ' ')} {record[key]:{spec}} to torch float32"
               for key, spec in (("max_abs_diff_to_torch_float32", ".3g"), ("mean_cosine_to_torch_float32", ".5f"))
               if key in record]
    in_flight = record.get("clips_in_flight", 1)
    line = (f"{record['runtime']} {record['version']} {record['precision']} on this {record['cpu_class']} CPU, "
            f"{record['threads']} threads" + (f" per clip, {in_flight} clips at once" if in_flight > 1 else "")
            + "".join(f", {figure}" for figure in figures))
    return line + "".join(f"; not {passed}" for passed in record["passed_over"])


def runtime_version(name: str) -> str:
    return torch.__version__ if name == "torch" else metadata.version(name)


def fidelity(runtime: Runtime, got: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> tuple[bool, dict]:
    """Whether ``got`` passes ``runtime``'s check against torch fp32's ``reference`` outputs, and the figure."""
    if runtime.precision == "float32":
        worst = max(float(np.abs(a - b).max()) for a, b in zip(got, reference))
        return worst <= EXACT_MAX_ABS_DIFF, {"max_abs_diff_to_torch_float32": worst}
    a, b = (np.concatenate([x.reshape(-1, x.shape[-1]) for x in xs]) for xs in (got, reference))
    cosines = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)
    mean = float(cosines.mean())
    return mean >= FAST_MIN_COSINE, {"mean_cosine_to_torch_float32": mean}


def load_runtime(model: torch.nn.Module, forward: Callable, candidates: list[Runtime], pinned: bool,
                 trial: np.ndarray, example: np.ndarray, input_name: str, dynamic: bool
                 ) -> tuple[Runtime, Run | None, dict]:
    """The first of ``candidates`` that loads ``model`` and passes its check on ``trial``: the runtime, its run
    (None for torch: the caller keeps its own model) and a record of it for ``runtime.json``."""
    threads = torch.get_num_threads()
    record = {"cpu_class": cpu_class(), "threads": threads}
    if candidates[0].name == "torch":
        return candidates[0], None, record | {"runtime": "torch", "version": torch.__version__,
                                              "precision": candidates[0].precision, "passed_over": []}
    module = ForwardModule(model, forward, input_name).eval()
    with torch.inference_mode():
        reference = [t.numpy() for t in module(torch.from_numpy(trial))]
    key = export_key(model, input_name, dynamic, len(reference))
    passed_over = []
    for runtime in candidates:
        if runtime.name == "torch":
            return runtime, None, record | {"runtime": "torch", "version": torch.__version__,
                                            "precision": runtime.precision, "passed_over": passed_over}
        try:
            # As many clips at once as there are threads, each on one (see the module's docstring).
            per_clip = 1 if runtime in (ONNXRUNTIME_EXACT, ONNXRUNTIME_SPLIT) else threads
            run = _exported_run(runtime, model, module, key, example, input_name, dynamic, len(reference), per_clip)
            passed, figure = fidelity(runtime, run(trial), reference)
            reason = None if passed else f"its check against torch float32 failed ({figure})"
        except Unavailable as error:
            reason = str(error)
        except Exception as error:  # noqa: BLE001 -- an exporter or runtime that cannot take the model: next one
            reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
        if reason is None:
            return runtime, run, record | {"runtime": runtime.name, "version": runtime_version(runtime.name),
                                           "precision": runtime.precision, **figure, "passed_over": passed_over,
                                           "threads": per_clip, "clips_in_flight": threads // per_clip}
        if pinned:
            raise PipelineError(f"embed.runtime={runtime.name} cannot run {model.config.model_type} in "
                                f"{runtime.precision} here: {reason}; use auto or torch")
        log.warning("embed: %s cannot run this %s model (%s); trying the next runtime", runtime,
                    model.config.model_type, reason)
        passed_over.append(f"{runtime}: {reason}")
    raise AssertionError("every candidate list ends in torch or is pinned")


class Unavailable(Exception):
    """A runtime that this machine or model cannot have, and why."""


def _exported_run(runtime: Runtime, model: torch.nn.Module, module: ForwardModule, key: str, example: np.ndarray,
                  input_name: str, dynamic: bool, outputs: int, threads: int) -> Run:
    """``runtime``'s run of ``module`` (a :class:`ForwardModule` of ``model``), exported to ONNX with ``key``."""
    if runtime == ONNXRUNTIME_SPLIT:
        from ravdess_ser.fast_mode import bfloat16_feature_encoder

        encoder = bfloat16_feature_encoder(model)
        if encoder is None:
            raise Unavailable("oneDNN has no accurate bfloat16 kernels for the feature encoder here")
        # The rest of the model is another graph: its cache entries carry their own suffix.
        with _feature_encoder_outside(model), exported_model(
                module, f"{key}-features-in", encoded_features(encoder, example), input_name, dynamic, outputs,
                quantised=True) as path:
            rest = onnxruntime_run(path, threads, spinning=False)
        return lambda values: rest(encoded_features(encoder, values))
    with exported_model(module, key, example, input_name, dynamic, outputs,
                        quantised=runtime == ONNXRUNTIME_FAST) as path:
        if runtime.name == "onnxruntime":
            return onnxruntime_run(path, threads)
        return openvino_run(path, threads, runtime.precision)
