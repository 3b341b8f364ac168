"""A few real training steps of a tiny model with any decoder kind, for the decoding-method tests.

Spoken digits (FSDD, 8 kHz) through the real Trainer, with the "<asr>" task token as forced prefix
(so prefix handling is trained, validated and decoded), then a model directory as the recipes write
it. The models are far from trained: the tests check the mechanics of training and decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from asr.data import DynamicBatchSampler, SpeechDataset
from asr.features import CMVNStats, FeatureExtractor
from asr.model import DecoderConfig, EncoderConfig, ModelConfig, build_model
from asr.model.io import save_model_dir
from asr.text import Tokenizer, train_tokenizer
from asr.train import OptimConfig, Trainer, TrainerConfig, TrainResult
from tests.train_helper import FEATURES, digit_utterances

PREFIX = ("<asr>",)


@dataclass
class Trained:
    exp_dir: Path
    model_dir: Path
    trainer: Trainer
    result: TrainResult
    tokenizer: Tokenizer
    test_wavs: list[Path]
    test_words: list[str]


def train_tiny(exp_dir: Path, shared: Path, decoder: DecoderConfig, *, ctc_weight: float = 0.3, steps: int = 6,
               seed: int = 0) -> Trained:
    """`steps` updates (batches of 8, validated at the end on 10 utterances, 4 of them decoded)."""
    torch.manual_seed(seed)
    train = digit_utterances(shared, ("george", "jackson"), range(5, 7))
    valid = digit_utterances(shared, ("george",), range(0, 1))
    test = digit_utterances(shared, ("jackson",), range(0, 1))
    tokenizer = train_tokenizer([u.text for u in train], kind="char", extra_tokens=PREFIX)
    features = FeatureExtractor(FEATURES)
    train_set = SpeechDataset(train, features, tokenizer, prefix_tokens=PREFIX, seed=seed)
    valid_set = SpeechDataset(valid, features, tokenizer, prefix_tokens=PREFIX)
    sampler = DynamicBatchSampler([u.duration for u in train], max_batch_size=8, num_buckets=2, seed=seed)
    model = build_model(ModelConfig(
        vocab_size=tokenizer.vocab_size, input_dim=FEATURES.n_mels, ctc_weight=ctc_weight, specaug=None,
        encoder=EncoderConfig(d_model=64, n_heads=4, n_layers=2, ffn_dim=128, subsampling_channels=16),
        decoder=decoder,
    ))
    stats = CMVNStats(FEATURES.n_mels)
    for utt in train[::4]:
        stats.update(SpeechDataset([utt], features)[0]["feats"])
    model.cmvn.set_stats(stats)
    config = TrainerConfig(max_epochs=100, max_steps=steps, log_every_steps=1, progress_bar=False, valid_decode_utts=4,
                           save_every_steps=0, keep_best=1, seed=seed)
    trainer = Trainer(model, train_set, sampler, valid_set, config, OptimConfig(lr=2e-3, warmup_steps=3), exp_dir,
                      tokenizer=tokenizer)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models train faster on one thread of a busy machine (see test_train.py)
    try:
        result = trainer.fit()
    finally:
        torch.set_num_threads(threads)
    model_dir = save_model_dir(exp_dir / "model", trainer.model, tokenizer, FEATURES, cmvn=stats)
    return Trained(exp_dir, model_dir, trainer, result, tokenizer, [Path(u.audio) for u in test],
                   [u.text for u in test])


def tiny_decoder(kind: str, **changes) -> DecoderConfig:
    return DecoderConfig(**{"kind": kind, "d_model": 64, "n_heads": 4, "n_layers": 2, "ffn_dim": 128, **changes})
