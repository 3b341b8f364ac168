"""Waveform augmentation for generated corpora: additive noise and synthetic reverberation.

Everything draws from a numpy Generator passed in, so a corpus built from a seed is the same
in every run and whichever worker process renders an utterance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NOISE_COLORS = ("white", "pink")


@dataclass(frozen=True)
class AugmentConfig:
    """What to add to each utterance.

    noise: add white or pink noise at an SNR drawn uniformly from `snr_db`.
    reverb: convolve with a synthetic room impulse response whose RT60 (seconds for the tail to
        decay by 60 dB) is drawn from `rt60` and whose direct-to-reverberant ratio from `drr_db`.
    """

    noise: bool = False
    reverb: bool = False
    snr_db: tuple[float, float] = (5.0, 25.0)
    noise_colors: tuple[str, ...] = NOISE_COLORS
    rt60: tuple[float, float] = (0.2, 0.8)
    drr_db: tuple[float, float] = (0.0, 10.0)

    def __post_init__(self) -> None:
        for name in ("snr_db", "rt60", "drr_db"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"AugmentConfig.{name}: range ({low}, {high}) has low > high")
        if self.rt60[0] <= 0:
            raise ValueError(f"AugmentConfig.rt60 must be > 0 seconds, got {self.rt60}")
        bad = [c for c in self.noise_colors if c not in NOISE_COLORS]
        if bad or not self.noise_colors:
            raise ValueError(
                f"AugmentConfig.noise_colors must be a non-empty subset of {NOISE_COLORS}, got {self.noise_colors}"
            )

    @property
    def enabled(self) -> bool:
        return self.noise or self.reverb


def colored_noise(rng: np.random.Generator, num_samples: int, color: str) -> np.ndarray:
    """(num_samples,) float64 noise with unit standard deviation; "pink" has power falling as 1/f."""
    if color == "white":
        return rng.standard_normal(num_samples)
    if color != "pink":
        raise ValueError(f"unknown noise color {color!r}; colors are {NOISE_COLORS}")
    # Shaped at a power-of-two length and cut: an FFT of a length with a large prime factor (an
    # utterance's length is anything) is many times slower, and stationary noise is as good cut.
    size = 1 << max(num_samples - 1, 1).bit_length()
    spectrum = np.fft.rfft(rng.standard_normal(size))
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = 1.0  # keep the DC bin finite; it is zeroed below
    spectrum /= np.sqrt(freqs)  # amplitude ~ 1/sqrt(f) is power ~ 1/f
    spectrum[0] = 0.0
    pink = np.fft.irfft(spectrum, n=size)
    return pink[:num_samples] / max(float(pink.std()), 1e-12)


def add_noise(wave: np.ndarray, rng: np.random.Generator, snr_db: float, color: str = "white") -> np.ndarray:
    """`wave` (S,) plus noise scaled to `snr_db` below the wave's mean power."""
    power = float(np.mean(np.square(wave, dtype=np.float64)))
    if power == 0.0:
        return wave.copy()
    noise = colored_noise(rng, wave.size, color) * math.sqrt(power / 10 ** (snr_db / 10))
    return (wave + noise).astype(wave.dtype)


def synthetic_rir(rng: np.random.Generator, sample_rate: int, rt60: float, drr_db: float) -> np.ndarray:
    """A room impulse response: a unit direct path, then exponentially decaying noise.

    The tail's amplitude falls by 60 dB over `rt60` seconds; its energy is `drr_db` below the
    direct path's. Returns (ceil(rt60 * sample_rate),) float64.
    """
    length = max(2, math.ceil(rt60 * sample_rate))
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * np.exp(-3 * math.log(10) * t / rt60)
    tail[0] = 0.0
    tail *= math.sqrt(10 ** (-drr_db / 10) / max(float(np.sum(tail**2)), 1e-12))
    tail[0] = 1.0
    return tail


def reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """`wave` (S,) convolved with `rir`, cut to S samples (FFT convolution)."""
    n = wave.size + rir.size - 1
    nfft = 1 << (n - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(wave, nfft) * np.fft.rfft(rir, nfft), nfft)[: wave.size]
    return wet.astype(wave.dtype)


def augment(wave: np.ndarray, sample_rate: int, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Apply `config` to `wave` (S,): reverberation first (the room), then noise (the microphone).

    The result is scaled down if needed so that it stays within [-1, 1).
    """
    if config.reverb:
        rir = synthetic_rir(rng, sample_rate, rng.uniform(*config.rt60), rng.uniform(*config.drr_db))
        wave = reverberate(wave, rir)
    if config.noise:
        color = config.noise_colors[rng.integers(len(config.noise_colors))]
        wave = add_noise(wave, rng, rng.uniform(*config.snr_db), color)
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    return wave * (0.99 / peak) if peak > 0.99 else wave
