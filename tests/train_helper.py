"""A tiny real training setup for the trainer tests: spoken digits (FSDD, 8 kHz) -> a 2+2-layer model.

Imported by the tests, and run as a script by the tests that need a separate process (SIGKILL
resume, torchrun DDP):

    python tests/train_helper.py EXP_DIR --shared ../shared --trainer '{"max_epochs": 2}' --optim '{}' \
        [--sampler '{"max_batch_size": 9}']

The script trains, then writes EXP_DIR/final_rank{RANK}.pt (the model's weights) and
EXP_DIR/writes_rank{RANK}.json (the paths under EXP_DIR that this process created, wrote, renamed or
deleted while training, seen through Python's audit hooks), and prints the TrainResult as JSON on
its last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from asr.audio import audio_duration
from asr.data import DynamicBatchSampler, SpeechDataset, Utterance
from asr.features import CMVNStats, FeatureConfig, FeatureExtractor, SpecAugmentConfig
from asr.model import DecoderConfig, EncoderConfig, ModelConfig, build_model
from asr.text import train_tokenizer
from asr.train import OptimConfig, Trainer, TrainerConfig

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FEATURES = FeatureConfig(sample_rate=8000, n_mels=40, n_fft=256)


def digit_utterances(shared: Path, speakers: tuple[str, ...], takes: range) -> list[Utterance]:
    """FSDD recordings `{digit}_{speaker}_{take}.wav`, transcribed as the digit's English word."""
    folder = shared / "data" / "fsdd" / "recordings"
    utterances = []
    for speaker in speakers:
        for take in takes:
            for digit, word in enumerate(DIGITS):
                path = folder / f"{digit}_{speaker}_{take}.wav"
                utterances.append(Utterance(id=path.stem, audio=str(path), duration=audio_duration(path), text=word))
    return utterances


def build_trainer(
    exp_dir: Path,
    shared: Path,
    trainer: dict[str, Any] | None = None,
    optim: dict[str, Any] | None = None,
    *,
    train_takes: range = range(5, 9),
    speed_factors: tuple[float, ...] = (0.9, 1.0, 1.1),
    sampler: dict[str, Any] | None = None,
    seed: int = 0,
    wrap_train: Callable[[SpeechDataset], Dataset] | None = None,
) -> Trainer:
    """Everything a training run needs, deterministic for a given seed (also under torchrun).

    sampler: DynamicBatchSampler options (max_batch_size, num_buckets, ...) over the defaults.
    wrap_train replaces the training set by a wrapper around it (the non-finite-loss test injects
    broken features this way).
    """
    torch.manual_seed(seed)  # model initialisation
    train = digit_utterances(shared, ("george", "jackson"), train_takes)
    valid = digit_utterances(shared, ("george",), range(0, 2))
    tokenizer = train_tokenizer([u.text for u in train], kind="char")
    features = FeatureExtractor(FEATURES)
    train_set = SpeechDataset(train, features, tokenizer, speed_factors=speed_factors, seed=seed)
    valid_set = SpeechDataset(valid, features, tokenizer)
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    batching = {"max_batch_size": 8, "num_buckets": 2, **(sampler or {})}
    train_sampler = DynamicBatchSampler([u.duration for u in train], seed=seed, rank=rank, world_size=world_size,
                                        **batching)
    model = build_model(ModelConfig(
        vocab_size=tokenizer.vocab_size,
        input_dim=FEATURES.n_mels,
        encoder=EncoderConfig(d_model=64, n_heads=4, n_layers=2, ffn_dim=128),
        decoder=DecoderConfig(d_model=64, n_heads=4, n_layers=2, ffn_dim=128),
        specaug=SpecAugmentConfig(freq_width=5, time_width_ratio=0.05, max_time_width=5),
    ))
    stats = CMVNStats(FEATURES.n_mels)
    for utt in train[::3]:
        stats.update(SpeechDataset([utt], features)[0]["feats"])
    model.cmvn.set_stats(stats)
    if wrap_train is not None:
        train_set = wrap_train(train_set)
    trainer_config = TrainerConfig(**{"max_epochs": 2, "log_every_steps": 1, "progress_bar": False,
                                      "valid_decode_utts": 8, "seed": seed, **(trainer or {})})
    optim_config = OptimConfig(**{"lr": 2e-3, "warmup_steps": 10, **(optim or {})})
    return Trainer(model, train_set, train_sampler, valid_set, trainer_config, optim_config, exp_dir,
                   tokenizer=tokenizer)


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def record_writes(root: Path) -> list[str]:
    """Start recording the files under `root` this process opens for writing, renames or deletes.

    Returns the list that fills up (paths relative to `root`). Audit hooks see every open(),
    os.open(), os.replace() and os.unlink() made from Python, which is how the trainer writes all
    of its files (checkpoints go through a Python file object, not torch's C++ writer).
    """
    prefix = os.path.abspath(root) + os.sep
    written: list[str] = []

    def relative(path: Any) -> str | None:
        if not isinstance(path, (str, bytes, os.PathLike)):  # e.g. an already open file descriptor
            return None
        path = os.path.abspath(os.fsdecode(path))
        return path[len(prefix) :] if path.startswith(prefix) else None

    def hook(event: str, args: tuple) -> None:
        if event == "open" and args[2] & _WRITE_FLAGS:
            paths = [relative(args[0])]
        elif event == "os.rename":
            paths = [relative(args[0]), relative(args[1])]
        elif event == "os.remove":
            paths = [relative(args[0])]
        else:
            return
        written.extend(p for p in paths if p is not None)

    sys.addaudithook(hook)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("exp_dir", type=Path)
    parser.add_argument("--shared", type=Path, required=True)
    parser.add_argument("--trainer", type=json.loads, default={})
    parser.add_argument("--optim", type=json.loads, default={})
    parser.add_argument("--sampler", type=json.loads, default={})
    args = parser.parse_args()
    torch.set_num_threads(1)  # the same arithmetic in every process of every test run
    written = record_writes(args.exp_dir)
    trainer = build_trainer(args.exp_dir, args.shared, args.trainer, args.optim, sampler=args.sampler)
    result = trainer.fit()
    rank = trainer.dist.rank
    (args.exp_dir / f"writes_rank{rank}.json").write_text(json.dumps(sorted(set(written))))
    torch.save(trainer.model.state_dict(), args.exp_dir / f"final_rank{rank}.pt")
    print(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(result).items()}))


if __name__ == "__main__":
    main()
