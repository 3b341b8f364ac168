"""Training throughput of the default small model (conf/model/transformer_small.yaml) on CPU threads.

Synthetic features and targets (random, fixed seed): each step is one forward + backward +
AdamW update with gradient clipping, as the Trainer does it. Reports milliseconds per step (median) and
seconds of audio trained per second of wall time.
Usage: python bench/train_step.py [--batch 8] [--seconds 6] [--tokens 30] [--steps 10] [--warmup 3] [--threads 2]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from asr.data import Batch
from asr.model import ModelConfig, build_model
from asr.train import OptimConfig, build_optimizer, build_scheduler

CONFIG = Path(__file__).resolve().parents[1] / "conf" / "model" / "transformer_small.yaml"


def synthetic_batch(config: ModelConfig, batch: int, frames: int, tokens: int, seed: int = 0) -> Batch:
    """`batch` utterances of `frames` feature frames with `tokens` target tokens each (ids past the specials)."""
    generator = torch.Generator().manual_seed(seed)
    feats = torch.randn(batch, frames, config.input_dim, generator=generator)
    # Lengths vary like a bucketed batch: between 80% and 100% of the longest.
    feat_lengths = torch.linspace(frames * 0.8, frames, batch).long().flip(0)
    target_lengths = torch.linspace(tokens * 0.8, tokens, batch).long().flip(0)
    targets = torch.randint(5, config.vocab_size, (batch, tokens), generator=generator)
    targets[torch.arange(tokens) >= target_lengths[:, None]] = -1
    return Batch(ids=[f"utt{i}" for i in range(batch)], feats=feats, feat_lengths=feat_lengths, targets=targets,
                 target_lengths=target_lengths, ctc_targets=targets.clone(), ctc_target_lengths=target_lengths.clone(),
                 prefix=torch.zeros(batch, 0, dtype=torch.long))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="utterances per batch")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds of audio per utterance")
    parser.add_argument("--tokens", type=int, default=30, help="target tokens per utterance")
    parser.add_argument("--vocab", type=int, default=500, help="vocabulary size (the config has none)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    values = OmegaConf.to_container(OmegaConf.load(CONFIG), resolve=True)
    config = ModelConfig.from_dict({"vocab_size": args.vocab, **values})
    model = build_model(config).train()
    optimizer = build_optimizer(model, OptimConfig(lr=1e-3, warmup_steps=10))
    scheduler = build_scheduler(optimizer, OptimConfig(lr=1e-3, warmup_steps=10), args.warmup + args.steps)
    frames = round(args.seconds * 100)  # 10 ms frame shift
    batch = synthetic_batch(config, args.batch, frames, args.tokens)

    def step() -> float:
        out = model(batch)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return float(out["loss"].detach())

    for _ in range(args.warmup):
        step()
    times, losses = [], []
    for _ in range(args.steps):
        start = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - start)

    batch_audio = float(batch.feat_lengths.sum()) / 100
    # The median resists other processes stealing the CPU for a step or two; mean and best beside it.
    ms = 1000 * statistics.median(times)
    figures = {
        "model": CONFIG.stem,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "threads": args.threads,
        "batch_utts": args.batch,
        "batch_audio_sec": batch_audio,
        "steps": args.steps,
        "ms_per_step": ms,
        "ms_per_step_mean": 1000 * statistics.fmean(times),
        "ms_per_step_min": 1000 * min(times),
        "audio_sec_per_sec": batch_audio / (ms / 1000),
        "first_loss": losses[0],
        "last_loss": losses[-1],
    }
    print(f"model        {figures['model']} ({figures['params_m']:.2f} M parameters), {args.threads} threads")
    print(f"batch        {args.batch} utterances x {args.seconds:g} s ({batch_audio:.1f} s of audio, "
          f"{args.tokens} tokens each)")
    print(f"step         {ms:8.1f} ms median, {figures['ms_per_step_mean']:8.1f} ms mean, "
          f"{figures['ms_per_step_min']:8.1f} ms best over {args.steps} steps")
    print(f"throughput   {figures['audio_sec_per_sec']:8.1f} s of audio / s")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
