"""``embed.mode=fast`` on the CPU in torch (``embed.runtime: torch``, and auto's last fall-back,
:mod:`ravdess_ser.cpu_runtimes`): int8 linear layers and bfloat16 convolutions, everything else float32.

The linear layers (60% of wav2vec2-base's FLOPs) get int8 weights, one scale
per output channel, and int8 activations quantised on the fly (torch's dynamic
quantisation, VNNI kernels). The convolutions (the feature encoder, 35% of the
FLOPs, and the positional convolution) run in bfloat16 where oneDNN has native
bfloat16 kernels (AVX512-BF16 or AMX), laid out channels-last, and only where a
trial run on this machine matches float32 (:func:`in_dtype_if_accurate`);
elsewhere they stay float32, as bfloat16 would be slower than float32 or wrong.
Whisper's encoder gets the int8 linear layers only: its two convolutions on the
mel frames are 4% of whisper-base's FLOPs (under 1% of large-v3's), and its
forward reads their ``stride``, which the channels-last modules do not mimic.
Normalisations inside the converted modules run in bfloat16 with them;
attention and everything between modules stay float32. docs/performance.md gives
the measured speed-up and the cosine similarity to exact mode.

This module imports torch; :mod:`ravdess_ser.embed` imports it only when fast
mode is asked for, so the stage clients stay light.
"""

from __future__ import annotations

import copy
import logging
import warnings

import torch
from torch import nn

log = logging.getLogger(__name__)

# bfloat16 keeps 8 bits of mantissa: a correct kernel stays above 0.9999 on one module.
ACCURATE_COSINE = 0.999


def quantise_for_cpu(model):
    """The model, changed in place for fast mode on the CPU (see the module's docstring)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        # torch 2.11 deprecates torch.ao.quantization for torchao, whose int8 path on the CPU needs torch.compile
        # to be fast (eager: 1.3x here, against 2x and more for this); torch is pinned, so the warning is noise.
        warnings.simplefilter("ignore", DeprecationWarning)
        model = quantize_dynamic(model, {name: per_channel_dynamic_qconfig for name in _quantisable_linears(model)},
                                 inplace=True)
    if torch.ops.mkldnn._is_mkldnn_bf16_supported() and model.config.model_type != "whisper":
        model.feature_extractor = bfloat16_feature_encoder(model) or model.feature_extractor
        model.encoder.pos_conv_embed = in_dtype_if_accurate(
            model.encoder.pos_conv_embed, torch.bfloat16,
            torch.randn(1, 50, model.config.hidden_size, generator=torch.Generator().manual_seed(0)),
            "positional convolution")
    return model


def bfloat16_feature_encoder(model) -> nn.Module | None:
    """A copy of ``model``'s feature encoder (the convolutions on the waveform) in bfloat16, channels-last,
    taking and giving float32: None where oneDNN has no native bfloat16 kernels here, or where the copy does not
    reproduce float32 on a trial second of noise (:func:`in_dtype_if_accurate`)."""
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return None
    trial = torch.randn(1, 16_000, generator=torch.Generator().manual_seed(0))
    converted = in_dtype_if_accurate(model.feature_extractor, torch.bfloat16, trial, "feature extractor")
    return None if converted is model.feature_extractor else converted


def _quantisable_linears(model: nn.Module) -> list[str]:
    """The names of the linear layers that int8 modules can replace.

    WavLM's attention hands its projections' weight and bias tensors to torch's multi-head attention
    function instead of calling them, which an int8 module cannot serve; its projections stay float32.
    """
    kept = [name for name, module in model.named_modules() if type(module).__name__ == "WavLMAttention"]
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and not any(name.startswith(f"{prefix}.") for prefix in kept)]


class ChannelsLastConv1d(nn.Module):
    """A ``Conv1d`` computed on channels-last memory: it takes and gives ``(N, C, T)`` tensors whose
    memory is laid out ``(N, T, C)``, so a stack of them passes activations on without copies.

    oneDNN's bfloat16 convolutions are fast only channels-last: wav2vec2-base's second feature-encoder
    layer on 4 s of audio takes 5.6 ms so on an AMX Xeon, against 21 ms for the same bfloat16 conv1d
    and 28 ms in float32. A convolution of one input channel (the encoder's first layer, straight on
    the waveform) is a matmul of the waveform's strided windows: 0.8 ms, against 27 ms for oneDNN's
    kernel. A weight-normalised convolution's weight is computed once.
    """

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"cannot convert {conv}: only numeric zero padding is supported")
        weight = conv.weight.detach().unsqueeze(2)
        self.weight = nn.Parameter(weight.contiguous(memory_format=torch.channels_last), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        self.kernel_size, self.stride, self.padding = conv.kernel_size[0], conv.stride[0], conv.padding[0]
        self.dilation, self.groups = conv.dilation[0], conv.groups
        self.windows = conv.in_channels == 1 and self.padding == 0 and self.dilation == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.windows:
            y = x[:, 0].unfold(-1, self.kernel_size, self.stride) @ self.weight.reshape(len(self.weight), -1).T
            return (y if self.bias is None else y + self.bias).transpose(1, 2)
        x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        return nn.functional.conv2d(x, self.weight, self.bias, (1, self.stride), (0, self.padding),
                                    (1, self.dilation), self.groups).squeeze(2)


class ChannelsLastGroupNorm(nn.Module):
    """A ``GroupNorm`` of one channel per group (each channel normalised over time, as in wav2vec2's first
    encoder layer) on channels-last memory: 2 ms where torch's group norm takes 25 ms on that layout.

    Per channel over time is what batch norm computes in training mode over a ``(T, C)`` matrix.
    """

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t = x.shape
        columns = x.permute(2, 0, 1).reshape(t, n * c)  # a view when n is 1, as on the CPU
        weight = None if self.weight is None else self.weight.repeat(n)
        bias = None if self.bias is None else self.bias.repeat(n)
        normalised = nn.functional.batch_norm(columns, None, None, weight, bias, training=True, eps=self.eps)
        return normalised.reshape(t, n, c).permute(1, 2, 0)


class ChannelsLastActivation(nn.Module):
    """An element-wise activation applied to a channels-last ``(N, C, T)`` tensor through its contiguous
    ``(N, T, C)`` view: torch 2.11's bfloat16 GELU takes 17 ms on wav2vec2-base's first feature-encoder
    output (3 s of audio) as a transposed tensor and 1.1 ms on the same memory seen as contiguous, on an
    AVX512-BF16 EPYC.
    """

    def __init__(self, activation: nn.Module):
        super().__init__()
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x.transpose(1, 2)).transpose(1, 2)


def _channels_last(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose convolutions, one-channel-per-group norms and the activations right after
    those convolutions (transformers' conv layers name them ``activation``) work on channels-last memory."""
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        after_conv = isinstance(getattr(parent, "conv", None), nn.Conv1d)
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv1d):
                setattr(parent, name, ChannelsLastConv1d(child))
            elif isinstance(child, nn.GroupNorm) and child.num_groups == child.num_channels:
                setattr(parent, name, ChannelsLastGroupNorm(child))
            elif name == "activation" and after_conv:
                setattr(parent, name, ChannelsLastActivation(child))
    return module


def in_dtype_if_accurate(module: nn.Module, dtype: torch.dtype, example: torch.Tensor, name: str) -> nn.Module:
    """``module`` computed in ``dtype`` with channels-last convolutions, taking and giving float32, if that
    reproduces its float32 output on ``example``; otherwise ``module`` itself, unchanged.

    A kernel can be wrong on one CPU and right on the next: with torch 2.11 on an AMX Xeon, oneDNN's
    bfloat16 grouped convolution with 8 or fewer channels per group returns garbage (cosine 0.03 to
    float32), while wav2vec2-base's 48 per group are right. So each module is tried once, on this
    machine, before the stage trusts it.
    """
    converted = _channels_last(module).to(dtype)
    converted.register_forward_pre_hook(lambda _, args: tuple(arg.to(dtype) for arg in args))
    converted.register_forward_hook(lambda _, args, output: output.float())
    with torch.no_grad():
        cosine = float(nn.functional.cosine_similarity(module(example).flatten(), converted(example).flatten(), dim=0))
    if not cosine >= ACCURATE_COSINE:  # also refuses NaN
        log.warning("fast mode: the %s stays float32: in %s on this machine it gives cosine %.4f to float32",
                    name, str(dtype).removeprefix("torch."), cosine)
        return module
    return converted
