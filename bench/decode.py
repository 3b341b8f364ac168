"""Decoding speed of a Whisper-tiny-shaped model on CPU threads: encoder, greedy, beam 5, batched beam 5.

The model has Whisper tiny's shape (d_model 384, 4 encoder + 4 decoder layers, 6 heads, FFN 1536, a
51,865-token vocabulary) with random weights. Inputs are 30 s of random 80-dim features (3,000
frames; 750 encoder frames after the x4 subsampling). Every search emits exactly 100 tokens (<eos>
suppressed: min_len = max_len = 100), so timings do not depend on what random weights say.
Decode times are for the search alone (scorers built from the encoder output, then the beam
search); encoder_ms is the encoder on one 30 s utterance. batch16 decodes 16 utterances in one
call, single16 decodes the same 16 one call each.
Usage: python bench/decode.py [--threads 2] [--repeats 3] [--tokens 100]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

from asr.decode import DecodeOptions
from asr.decode.scorers import SearchContext, build_scorers
from asr.decode.search import beam_search
from asr.model import ASRModel, DecoderConfig, EncoderConfig, ModelConfig, build_model

VOCAB = 51865
SECONDS = 30.0


def whisper_tiny_shape() -> ASRModel:
    encoder = EncoderConfig(d_model=384, n_heads=6, n_layers=4, ffn_dim=1536, subsampling="conv2d4")
    decoder = DecoderConfig(d_model=384, n_heads=6, n_layers=4, ffn_dim=1536)
    torch.manual_seed(0)
    return build_model(ModelConfig(vocab_size=VOCAB, input_dim=80, encoder=encoder, decoder=decoder,
                                   ctc_weight=0.3, specaug=None)).eval()


def best_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first-call allocations and kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@torch.no_grad()
def search(model: ASRModel, enc: torch.Tensor, enc_lengths: torch.Tensor, options: DecodeOptions) -> None:
    """What asr.decode.decode does after the encoder."""
    prefix = torch.zeros(enc.size(0), 0, dtype=torch.long)
    scorers = build_scorers(SearchContext(model, enc, enc_lengths, options.beam_size, prefix), options)
    limits = torch.clamp((enc_lengths.float() * options.max_len_ratio).long(), min=1, max=options.max_len)
    finished = beam_search(scorers, limits, options, VOCAB)
    lengths = finished.length[:, 0].tolist()
    assert lengths == [options.max_len] * enc.size(0), lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = whisper_tiny_shape()
    frames = int(SECONDS * 100)
    feats = torch.randn(16, frames, 80, generator=torch.Generator().manual_seed(0))
    lengths = torch.full((16,), frames)
    with torch.no_grad():
        encoder_s = best_time(lambda: model.encode(feats[:1], lengths[:1]), args.repeats)
        enc, enc_lengths = model.encode(feats, lengths)

    fixed = DecodeOptions(min_len=args.tokens, max_len=args.tokens, ctc_weight=0.0)
    one = (enc[:1], enc_lengths[:1])
    figures: dict[str, float | int] = {"threads": args.threads, "tokens": args.tokens, "vocab": VOCAB,
                                       "audio_seconds": SECONDS}
    figures["encoder_ms"] = 1000 * encoder_s
    figures["greedy_ms"] = 1000 * best_time(lambda: search(model, *one, fixed.replace(beam_size=1)), args.repeats)
    figures["beam5_ms"] = 1000 * best_time(lambda: search(model, *one, fixed.replace(beam_size=5)), args.repeats)
    joint = fixed.replace(beam_size=5, ctc_weight=0.3)
    figures["beam5_ctc_ms"] = 1000 * best_time(lambda: search(model, *one, joint), args.repeats)
    beam5 = fixed.replace(beam_size=5)
    figures["batch16_beam5_ms"] = 1000 * best_time(lambda: search(model, enc, enc_lengths, beam5), 1)

    def singles() -> None:
        for i in range(16):
            search(model, enc[i : i + 1], enc_lengths[i : i + 1], beam5)

    start = time.perf_counter()
    singles()
    figures["single16_beam5_ms"] = 1000 * (time.perf_counter() - start)
    figures["batch16_speedup"] = figures["single16_beam5_ms"] / figures["batch16_beam5_ms"]

    print(f"Whisper-tiny shape, {args.threads} threads, {SECONDS:.0f} s of audio, {args.tokens} tokens per search")
    print(f"encoder (30 s)          {figures['encoder_ms']:9.1f} ms")
    for name, label in [("greedy", "greedy"), ("beam5", "beam 5"), ("beam5_ctc", "beam 5 + CTC 0.3"),
                        ("batch16_beam5", "beam 5, batch of 16"), ("single16_beam5", "beam 5, 16 single calls")]:
        ms = figures[f"{name}_ms"]
        print(f"{label:24s}{ms:9.1f} ms  {ms / args.tokens:7.2f} ms/token")
    print(f"batch of 16 vs 16 single calls: {figures['batch16_speedup']:.1f}x faster")
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
