"""Convolutional front-ends that shorten the feature sequence before the encoder (as in WeNet/ESPnet).

Conv2dSubsampling (this toolkit's models) uses no padding, so an output frame only sees input frames
inside the utterance: `output_lengths` follows the conv arithmetic exactly and padded frames never
leak into valid ones. Conv1dSubsampling (imported Whisper and Speech2Text models) pads each
convolution as its reference does, and zeroes the frames past each utterance's end before every
convolution, so that a padded batch still gives every utterance exactly the frames it gets alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asr.model.linear import Linear


class Conv2dSubsampling(nn.Module):
    """Stack of 2-D convolutions (each followed by ReLU) over (time, frequency), then Linear to d_model.

    Subclasses set `convs`: (kernel, stride) per convolution, applied to both axes.
    feats (B, T, F) -> (B, T', d_model) with T' = output_lengths(T).
    """

    convs: tuple[tuple[int, int], ...] = ()

    def __init__(self, input_dim: int, d_model: int, channels: int = 0):
        super().__init__()
        channels = channels or d_model
        layers: list[nn.Module] = []
        in_channels, freq = 1, input_dim
        for kernel, stride in self.convs:
            layers += [nn.Conv2d(in_channels, channels, kernel, stride), nn.ReLU()]
            in_channels, freq = channels, (freq - kernel) // stride + 1
        if freq < 1:
            raise ValueError(f"{type(self).__name__}: input_dim={input_dim} is too small for its convolutions "
                             f"(needs at least {self._min_length()} feature bins)")
        self.conv = nn.Sequential(*layers)
        self.out = Linear(channels * freq, d_model)

    @property
    def rate(self) -> int:
        """Frames in per frame out (2, 4, 6 or 8)."""
        return math.prod(stride for _, stride in self.convs)

    @property
    def min_input_length(self) -> int:
        """The fewest input frames that give one output frame."""
        return self._min_length()

    @classmethod
    def _min_length(cls) -> int:
        # Walk back from one output frame: a conv needs (n - 1) * stride + kernel inputs for n outputs.
        length = 1
        for kernel, stride in reversed(cls.convs):
            length = (length - 1) * stride + kernel
        return length

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """lengths (B,) -> (B,) frames after subsampling (0 for inputs shorter than min_input_length)."""
        for kernel, stride in self.convs:
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
            lengths = lengths.clamp(min=0)
        return lengths

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """feats (B, T, F), lengths (B,) -> (x (B, T', d_model), lengths (B,))."""
        if feats.size(1) < self.min_input_length:
            raise ValueError(f"{type(self).__name__} needs at least {self.min_input_length} frames, "
                             f"got a batch of {feats.size(1)}")
        x = self.conv(feats.unsqueeze(1))  # (B, C, T', F')
        batch, channels, frames, freq = x.shape
        x = self.out(x.transpose(1, 2).reshape(batch, frames, channels * freq))
        return x, self.output_lengths(lengths)


class Conv2dSubsampling2(Conv2dSubsampling):
    """x2: a 3x3 stride-2 then a 3x3 stride-1 convolution (ESPnet's Conv2dSubsampling2). For character
    targets of fast speech, where 40 ms frames leave CTC too few frames per character."""

    convs = ((3, 2), (3, 1))


class Conv2dSubsampling4(Conv2dSubsampling):
    """x4: two 3x3 stride-2 convolutions."""

    convs = ((3, 2), (3, 2))


class Conv2dSubsampling6(Conv2dSubsampling):
    """x6: a 3x3 stride-2 then a 5x5 stride-3 convolution."""

    convs = ((3, 2), (5, 3))


class Conv2dSubsampling8(Conv2dSubsampling):
    """x8: three 3x3 stride-2 convolutions."""

    convs = ((3, 2), (3, 2), (3, 2))


class Conv1dSubsampling(nn.Module):
    """1-D convolutions over time, the feature bins being the input channels; no Linear after them.

    Subclasses set `convs`: (kernel, stride) per convolution, each padded by kernel // 2, and `glu`:
    a GLU after each convolution (which halves its channels) or else a GELU. channels: the inner
    convolutions' output channels (0 = d_model). feats (B, T, F) -> (B, T', d_model).
    """

    convs: tuple[tuple[int, int], ...] = ()
    glu: bool = False

    def __init__(self, input_dim: int, d_model: int, channels: int = 0):
        super().__init__()
        channels = channels or d_model
        if self.glu and channels % 2:
            raise ValueError(f"{type(self).__name__}: channels={channels} must be even (a GLU halves them)")
        layers: list[nn.Module] = []
        in_channels = input_dim
        for i, (kernel, stride) in enumerate(self.convs):
            last = i == len(self.convs) - 1
            out_channels = (d_model if last else channels) * (2 if self.glu and last else 1)
            layers.append(nn.Conv1d(in_channels, out_channels, kernel, stride, padding=kernel // 2))
            in_channels = out_channels // 2 if self.glu else out_channels
        self.conv = nn.ModuleList(layers)

    @property
    def rate(self) -> int:
        """Frames in per frame out."""
        return math.prod(stride for _, stride in self.convs)

    @property
    def min_input_length(self) -> int:
        return 1

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """lengths (B,) -> (B,) frames after subsampling."""
        for kernel, stride in self.convs:
            lengths = _padded_conv_length(lengths, kernel, stride)
        return lengths

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """feats (B, T, F), lengths (B,) -> (x (B, T', d_model), lengths (B,))."""
        x = feats.transpose(1, 2)  # (B, F, T)
        for conv, (kernel, stride) in zip(self.conv, self.convs):
            valid = torch.arange(x.size(2), device=x.device) < lengths.to(x.device)[:, None]
            x = conv(x.masked_fill(~valid[:, None, :], 0.0))
            x = F.glu(x, dim=1) if self.glu else F.gelu(x)
            lengths = _padded_conv_length(lengths, kernel, stride)
        return x.transpose(1, 2), lengths


def _padded_conv_length(lengths: Tensor, kernel: int, stride: int) -> Tensor:
    """Output frames of a convolution padded by kernel // 2 on both sides."""
    return (torch.div(lengths + 2 * (kernel // 2) - kernel, stride, rounding_mode="floor") + 1).clamp(min=0)


class Conv1dSubsampling2(Conv1dSubsampling):
    """x2, Whisper's front-end: a kernel-3 convolution, then a kernel-3 stride-2 one, each followed by GELU."""

    convs = ((3, 1), (3, 2))


class Conv1dGLUSubsampling4(Conv1dSubsampling):
    """x4, fairseq Speech2Text's front-end: two kernel-5 stride-2 convolutions, each followed by a GLU."""

    convs = ((5, 2), (5, 2))
    glu = True


SUBSAMPLING: dict[str, type[nn.Module]] = {
    "conv2d2": Conv2dSubsampling2,
    "conv2d4": Conv2dSubsampling4,
    "conv2d6": Conv2dSubsampling6,
    "conv2d8": Conv2dSubsampling8,
    "conv1d2": Conv1dSubsampling2,
    "conv1d4_glu": Conv1dGLUSubsampling4,
}
