"""Acoustic front-end: log-mel / Kaldi fbank features, global CMVN, SpecAugment, speed perturbation.

There is one feature extractor (`FeatureExtractor`), configured by a frozen `FeatureConfig`.
The model owns the CMVN statistics and SpecAugment (`GlobalCMVN`, `SpecAugment` are modules of
the model), so a model directory carries everything needed to turn audio into its input.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from asr.fileio import write_json

FEATURE_KINDS = ("logmel", "fbank", "whisper")
WHISPER_CHUNK_S = 30.0  # Whisper models read exactly 30 s of (zero-padded) audio


@dataclass(frozen=True)
class FeatureConfig:
    """How waveforms become features.

    kind: "logmel" (torchaudio mel spectrogram with Slaney mel scale, natural log, centred frames),
          "fbank" (Kaldi-compatible `torchaudio.compliance.kaldi.fbank`, frames snipped at the edges), or
          "whisper" (openai-whisper's log-mel: each waveform zero-padded to 30 s, the "logmel" spectrogram
          without its last frame, log10, floored at the utterance's maximum - 8, then (x + 4) / 4; every
          one of the 3000 frames counts as valid, as in Whisper's training; longer audio is an error).
    utterance_cmvn: normalise each utterance's features to zero mean and unit variance per bin
          (fairseq Speech2Text's input normalisation).
    """

    kind: str = "logmel"
    sample_rate: int = 16000
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    f_min: float = 0.0
    f_max: float | None = None
    dither: float = 0.0
    utterance_cmvn: bool = False

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"FeatureConfig.kind: expected one of {FEATURE_KINDS}, got {self.kind!r}")
        if self.sample_rate < 1000:
            raise ValueError(f"FeatureConfig.sample_rate: implausible rate {self.sample_rate}")
        if self.n_fft < self.win_length:
            raise ValueError(
                f"FeatureConfig.n_fft ({self.n_fft}) is shorter than the window "
                f"({self.win_length} samples = {self.win_ms} ms at {self.sample_rate} Hz)"
            )
        if self.hop_length < 1 or self.n_mels < 1:
            raise ValueError("FeatureConfig: hop_ms and n_mels must be positive")

    @property
    def max_seconds(self) -> float | None:
        """The longest audio one input may hold (None: any length)."""
        return WHISPER_CHUNK_S if self.kind == "whisper" else None

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FeatureConfig:
        from asr.typed_config import from_dict

        return from_dict(cls, values)


class FeatureExtractor(nn.Module):
    """Waveforms (B, S) -> features (B, T, n_mels).

    A padded batch gives, for each utterance, exactly the frames that utterance gives on its own:
    each waveform is edge-padded by itself before the STFT, so padding never leaks into valid frames.
    """

    def __init__(self, config: FeatureConfig = FeatureConfig()):
        super().__init__()
        self.config = config
        c = config
        self.spectrogram = torchaudio.transforms.Spectrogram(
            n_fft=c.n_fft, win_length=c.win_length, hop_length=c.hop_length, power=2.0, center=False
        )
        self.mel_scale = torchaudio.transforms.MelScale(
            n_mels=c.n_mels,
            sample_rate=c.sample_rate,
            f_min=c.f_min,
            f_max=c.f_max,
            n_stft=c.n_fft // 2 + 1,
            norm="slaney",
            mel_scale="slaney",
        )
        if c.kind == "whisper":  # librosa's filters (which Whisper was trained with), to the last bit
            filters = slaney_mel_filters(c.sample_rate, c.n_fft, c.n_mels, c.f_min, c.f_max)
            self.register_buffer("whisper_filters", filters, persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for `num_samples` samples (0 when too short for a Kaldi frame)."""
        hop, win = self.config.hop_length, self.config.win_length
        if self.config.kind == "whisper":
            return self._whisper_samples // hop
        if self.config.kind == "logmel":
            return 1 + num_samples // hop
        return 0 if num_samples < win else 1 + (num_samples - win) // hop

    def extract(self, wave: Tensor) -> Tensor:
        """One waveform (S,) -> features (T, n_mels)."""
        if wave.dim() != 1:
            raise ValueError(f"FeatureExtractor.extract expects a 1-D waveform, got shape {tuple(wave.shape)}")
        feats, _ = self.forward(wave.unsqueeze(0))
        return feats[0]

    @torch.no_grad()
    def forward(self, waves: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """waves (B, S) float, lengths (B,) samples -> feats (B, T, n_mels), feat_lengths (B,).

        Frames past an utterance's length are zero.
        """
        if waves.dim() != 2:
            raise ValueError(f"FeatureExtractor expects waves of shape (B, S), got {tuple(waves.shape)}")
        if lengths is None:
            lengths = torch.full((waves.size(0),), waves.size(1), dtype=torch.long)
        lengths = lengths.to(torch.long).cpu()
        items = [waves[i, : int(n)].float() for i, n in enumerate(lengths)]
        if self.training and self.config.dither > 0:
            items = [w + self.config.dither * torch.randn_like(w) / 32768.0 for w in items]
        if self.config.kind == "logmel":
            feats = self._logmel(items)
        elif self.config.kind == "whisper":
            feats = self._whisper(items)
        else:
            feats = [self._fbank(w) for w in items]
        if self.config.utterance_cmvn:
            feats = [_utterance_cmvn(f) for f in feats]
        feat_lengths = torch.tensor([f.size(0) for f in feats], dtype=torch.long)
        if int(feat_lengths.min()) == 0:
            shortest = int(lengths.min())
            raise ValueError(
                f"audio of {shortest} samples is too short for one {self.config.win_ms} ms frame"
            )
        return nn.utils.rnn.pad_sequence(feats, batch_first=True), feat_lengths

    def _logmel(self, items: list[Tensor]) -> list[Tensor]:
        # Reflect-pad each utterance on its own (what torch.stft(center=True) does), then zero-pad to
        # a common length so that one batched STFT serves the whole batch.
        pad = self.config.n_fft // 2
        padded = [_edge_pad(w, pad) for w in items]
        batch = nn.utils.rnn.pad_sequence(padded, batch_first=True)
        mel = self.mel_scale(self.spectrogram(batch))  # (B, n_mels, T)
        logmel = torch.log(torch.clamp(mel, min=1e-10)).transpose(1, 2)
        return [logmel[i, : self.num_frames(w.numel())] for i, w in enumerate(items)]

    @property
    def _whisper_samples(self) -> int:
        return int(WHISPER_CHUNK_S * self.config.sample_rate)

    def _whisper(self, items: list[Tensor]) -> list[Tensor]:
        # whisper.log_mel_spectrogram(whisper.pad_or_trim(audio)), batched.
        chunk = self._whisper_samples
        for wave in items:
            if wave.numel() > chunk + self.config.hop_length:  # a few samples over: rounding of a 30 s span
                raise ValueError(f"whisper features take at most {WHISPER_CHUNK_S:g} s of audio, got "
                                 f"{wave.numel() / self.config.sample_rate:.2f} s (transcribe cuts long audio)")
        pad = self.config.n_fft // 2
        batch = torch.stack([_edge_pad(F.pad(w[:chunk], (0, chunk - w[:chunk].numel())), pad) for w in items])
        power = self.spectrogram(batch)[:, :, :-1]  # (B, n_fft // 2 + 1, T): as torch.stft(...)[..., :-1]
        mel = self.whisper_filters @ power  # (B, n_mels, T)
        log_spec = torch.clamp(mel, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.amax(dim=(1, 2), keepdim=True) - 8.0)
        feats = ((log_spec + 4.0) / 4.0).transpose(1, 2)
        return list(feats)

    def _fbank(self, wave: Tensor) -> Tensor:
        c = self.config
        if wave.numel() < c.win_length:
            return wave.new_zeros(0, c.n_mels)
        # Kaldi works on 16-bit integer scale; dither is applied above, so it is off here.
        return torchaudio.compliance.kaldi.fbank(
            wave.unsqueeze(0) * 32768.0,
            num_mel_bins=c.n_mels,
            frame_length=c.win_ms,
            frame_shift=c.hop_ms,
            sample_frequency=c.sample_rate,
            low_freq=c.f_min,
            high_freq=c.f_max if c.f_max is not None else 0.0,
            dither=0.0,
            energy_floor=0.0,
        )


def slaney_mel_filters(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                       f_max: float | None = None) -> Tensor:
    """Slaney-style mel filterbank (n_mels, n_fft // 2 + 1), computed in float64 as
    librosa.filters.mel(sr, n_fft, n_mels) does, then rounded to float32.

    torchaudio's float32 version differs in the last bits, which the log makes visible in the
    filters' near-zero tails (up to 5e-5 on Whisper's 128-bin features).
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, log_step = min_log_hz / f_sp, math.log(6.4) / 27.0

    def hz_to_mel(hz: float) -> float:
        return hz / f_sp if hz < min_log_hz else min_log_mel + math.log(hz / min_log_hz) / log_step

    mels = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2, dtype=torch.float64)
    mel_hz = torch.where(mels >= min_log_mel, min_log_hz * torch.exp(log_step * (mels - min_log_mel)), f_sp * mels)
    fft_hz = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    widths = mel_hz.diff()
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return weights.float()


def _utterance_cmvn(feats: Tensor) -> Tensor:
    """(T, F) -> the same normalised to zero mean and unit (population) variance per bin."""
    centred = feats - feats.mean(dim=0)
    return centred / centred.std(dim=0, correction=0).clamp(min=1e-10)


def _edge_pad(wave: Tensor, pad: int) -> Tensor:
    """Reflect-pad a 1-D wave; very short waves (<= pad samples) fall back to zero padding."""
    mode = "reflect" if wave.numel() > pad else "constant"
    return F.pad(wave.view(1, 1, -1), (pad, pad), mode=mode).view(-1)


class CMVNStats:
    """Running per-dimension mean and variance of features, accumulated in float64."""

    def __init__(self, dim: int):
        self.count = 0
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.sum_sq = torch.zeros(dim, dtype=torch.float64)

    def update(self, feats: Tensor) -> None:
        """feats (T, F): add one utterance's frames."""
        f = feats.detach().to(torch.float64).reshape(-1, self.sum.numel())
        self.count += f.size(0)
        self.sum += f.sum(0)
        self.sum_sq += (f * f).sum(0)

    @property
    def mean(self) -> Tensor:
        self._check_nonempty()
        return (self.sum / self.count).float()

    @property
    def istd(self) -> Tensor:
        self._check_nonempty()
        mean = self.sum / self.count
        var = (self.sum_sq / self.count - mean * mean).clamp(min=1e-20)
        return (1.0 / var.sqrt()).float()

    def _check_nonempty(self) -> None:
        if self.count == 0:
            raise ValueError("CMVN statistics are empty: no frames were accumulated")

    def to_dict(self) -> dict:
        return {"count": self.count, "sum": self.sum.tolist(), "sum_sq": self.sum_sq.tolist()}

    @classmethod
    def from_dict(cls, values: dict) -> CMVNStats:
        stats = cls(len(values["sum"]))
        stats.count = int(values["count"])
        stats.sum = torch.tensor(values["sum"], dtype=torch.float64)
        stats.sum_sq = torch.tensor(values["sum_sq"], dtype=torch.float64)
        return stats

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> CMVNStats:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a valid CMVN statistics file ({e})") from e


class GlobalCMVN(nn.Module):
    """x (B, T, F) -> (x - mean) * istd, with the statistics stored as buffers of the model."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("istd", torch.ones(dim))

    def set_stats(self, stats: CMVNStats) -> None:
        if stats.sum.numel() != self.mean.numel():
            raise ValueError(f"CMVN stats have dim {stats.sum.numel()}, the model expects {self.mean.numel()}")
        self.mean.copy_(stats.mean)
        self.istd.copy_(stats.istd)

    @classmethod
    def from_stats(cls, stats: CMVNStats) -> GlobalCMVN:
        module = cls(stats.sum.numel())
        module.set_stats(stats)
        return module

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) * self.istd


@dataclass(frozen=True)
class SpecAugmentConfig:
    freq_masks: int = 2
    freq_width: int = 27
    time_masks: int = 2
    time_width_ratio: float = 0.05
    max_time_width: int = 40
    time_warp: int = 0


class SpecAugment(nn.Module):
    """SpecAugment (Park et al., 2019) on a padded batch, respecting each utterance's length.

    torchaudio's FrequencyMasking/TimeMasking do not know about padding, so time masks could land
    in padding and be wasted; here masks are drawn per utterance inside its valid frames, vectorised.
    Active only in training mode.
    """

    def __init__(self, config: SpecAugmentConfig = SpecAugmentConfig()):
        super().__init__()
        self.config = config

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """x (B, T, F), lengths (B,) -> augmented x (B, T, F)."""
        if not self.training:
            return x
        c = self.config
        if c.time_warp > 0:
            x = torch.stack([_time_warp(x[i], int(n), c.time_warp) for i, n in enumerate(lengths)])
        batch, frames, dim = x.shape
        keep = torch.ones(batch, frames, dim, dtype=torch.bool, device=x.device)
        if c.freq_masks > 0 and c.freq_width > 0:
            band = _random_bands(batch, c.freq_masks, c.freq_width, torch.full((batch,), dim), dim, x.device)
            keep &= ~band.unsqueeze(1)
        if c.time_masks > 0:
            max_width = torch.clamp((lengths.float() * c.time_width_ratio).long(), max=c.max_time_width)
            max_width = max_width.to(x.device)
            span = _random_bands(batch, c.time_masks, max_width, lengths.to(x.device), frames, x.device)
            keep &= ~span.unsqueeze(2)
        return x.masked_fill(~keep, 0.0)


def _random_bands(
    batch: int, count: int, max_width: int | Tensor, limit: Tensor, size: int, device: torch.device
) -> Tensor:
    """Boolean (batch, size): `count` random bands per row, width in [0, max_width], inside [0, limit)."""
    max_width = torch.as_tensor(max_width, device=device).expand(batch).unsqueeze(1)  # (B, 1)
    limit = limit.to(device).unsqueeze(1)
    width = (torch.rand(batch, count, device=device) * (max_width + 1)).long()
    width = torch.minimum(width, limit)
    start = (torch.rand(batch, count, device=device) * (limit - width + 1)).long()
    pos = torch.arange(size, device=device).view(1, 1, -1)
    inside = (pos >= start.unsqueeze(2)) & (pos < (start + width).unsqueeze(2))  # (B, count, size)
    return inside.any(dim=1)


def _time_warp(x: Tensor, length: int, window: int) -> Tensor:
    """Warp the valid part of one utterance (T, F) in time around a random centre (linear interpolation)."""
    if length <= 2 * window + 1:
        return x
    centre = int(torch.randint(window, length - window, ()))
    target = centre + int(torch.randint(-window, window + 1, ()))
    target = min(max(target, 1), length - 1)
    valid = x[:length].t().unsqueeze(0)  # (1, F, length)
    left = F.interpolate(valid[..., :centre], size=target, mode="linear", align_corners=False)
    right = F.interpolate(valid[..., centre:], size=length - target, mode="linear", align_corners=False)
    warped = torch.cat([left, right], dim=-1)[0].t()
    return torch.cat([warped, x[length:]], dim=0)


def speed_perturb(wave: Tensor, sample_rate: int, factor: float) -> Tensor:
    """Change speed (tempo and pitch together, like sox `speed`) by resampling: (S,) -> (~S / factor,)."""
    if factor <= 0 or not math.isfinite(factor):
        raise ValueError(f"speed factor must be a positive number, got {factor}")
    if factor == 1.0:
        return wave
    # Playing the samples at sample_rate * factor and resampling back to sample_rate.
    return torchaudio.functional.resample(wave, orig_freq=int(round(sample_rate * factor)), new_freq=sample_rate)
