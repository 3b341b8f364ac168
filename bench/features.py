"""Feature-extraction throughput: seconds of audio per second of wall time, 1 thread, 60 s of audio.

Compares asr's log-mel (and Kaldi fbank) with librosa's mel spectrogram on the same settings
(16 kHz, 25 ms Hann window, 10 ms hop, n_fft 512, 80 Slaney mels, reflect padding).
Usage: python bench/features.py [--seconds 60] [--repeats 5]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import time

import librosa
import numpy as np
import torch

from asr.features import FeatureConfig, FeatureExtractor


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up (librosa's numba JIT, torch's first-call allocations)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)

    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(int(args.seconds * 16000))).astype(np.float32)
    wave = torch.from_numpy(audio)
    logmel = FeatureExtractor(FeatureConfig(kind="logmel"))
    fbank = FeatureExtractor(FeatureConfig(kind="fbank"))

    def run_librosa() -> None:
        mel = librosa.feature.melspectrogram(
            y=audio, sr=16000, n_fft=512, hop_length=160, win_length=400, center=True,
            pad_mode="reflect", power=2.0, n_mels=80,
        )
        np.log(np.maximum(mel, 1e-10))

    figures = {
        "audio_seconds": args.seconds,
        "threads": 1,
        "asr_logmel_ms": 1000 * best_time(lambda: logmel.extract(wave), args.repeats),
        "asr_fbank_ms": 1000 * best_time(lambda: fbank.extract(wave), args.repeats),
        "librosa_ms": 1000 * best_time(run_librosa, args.repeats),
    }
    for name in ("asr_logmel", "asr_fbank", "librosa"):
        figures[f"{name}_x_realtime"] = args.seconds / (figures[f"{name}_ms"] / 1000)
    for name in ("asr_logmel", "asr_fbank", "librosa"):
        print(f"{name:12s} {figures[name + '_ms']:8.1f} ms  {figures[name + '_x_realtime']:8.0f} s audio / s")
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
