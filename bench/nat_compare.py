"""Autoregressive vs non-autoregressive decoding: WER, real-time factor and tokens per second per method.

Decodes one test manifest with every decoding method each model supports (asr.decode.available_methods):
an attention + CTC model gives attention beam search, CTC greedy, CTC prefix beam search and attention
rescoring; a NAT model gives nat (and the CTC methods); a Mask-CTC model gives maskctc (and the CTC
methods). One row per (model, method):

    WER, CER         against the manifest's transcripts, both sides normalised by the model's tokenizer
    RTF              decoding seconds / audio seconds, on --threads CPU threads (or --device)
    tokens/s         output tokens per decoding second
    x attention      how many times faster than the first attention beam search row

Decoding time is the encoder plus the search (asr.decode.decode), over batches of at most
--batch-seconds of padded audio; features are computed beforehand and not timed. Every method is
run once on the first batch before timing, then over the whole set --repeats times, and the fastest
pass counts (the machine may be shared). The last line printed is one JSON object with the table.

    python bench/nat_compare.py exp/synth_ar/model exp/synth_nat/model exp/synth_maskctc/model \\
        --manifest data/synth/test.jsonl [--threads 2] [--beam-size 5] [--nat-candidates 1,3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from asr.data import DynamicBatchSampler, SpeechDataset, collate, read_manifest
from asr.decode import METHODS, DecodeOptions, available_methods
from asr.metrics import error_rate
from asr.model.io import SpeechModel, load_model


@dataclass(frozen=True)
class Row:
    model: str
    method: str
    wer: float
    cer: float
    rtf: float
    tokens_per_s: float
    seconds: float


def batches(speech: SpeechModel, manifest: Path, batch_seconds: float, limit: int | None
            ) -> tuple[list[tuple[torch.Tensor, torch.Tensor, list[str]]], list[str], float]:
    """Feature batches (feats, lengths, ids) in length-bucketed order, the references by id order, audio seconds."""
    utterances = read_manifest(manifest)[:limit]
    if not utterances:
        raise ValueError(f"{manifest}: no utterances")
    dataset = SpeechDataset(utterances, speech.features)
    sampler = DynamicBatchSampler([u.duration for u in utterances], max_seconds=batch_seconds, shuffle=False)
    out = []
    for indices in sampler:
        batch = collate([dataset[i] for i in indices])
        out.append((batch.feats.to(speech.device), batch.feat_lengths.to(speech.device), batch.ids))
    refs = {u.id: speech.tokenizer.normalizer(u.text) for u in utterances}
    return out, [refs[i] for _, _, ids in out for i in ids], sum(u.duration for u in utterances)


def run(speech: SpeechModel, data: list, options: DecodeOptions, repeats: int) -> tuple[list[str], int, float]:
    """-> (hypotheses in batch order, output tokens, decoding seconds of the fastest of `repeats` passes)."""
    speech.decode(data[0][0], data[0][1], options)  # warm-up
    passes = []
    for _ in range(repeats):
        hyps, tokens, seconds = [], 0, 0.0
        for feats, lengths, _ in data:
            if speech.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            results = speech.decode(feats, lengths, options)
            seconds += time.perf_counter() - start
            hyps += [r.text for r in results]
            tokens += sum(len(r.tokens) for r in results)
        passes.append(seconds)
    return hyps, tokens, min(passes)


def variants(method: str, args: argparse.Namespace) -> list[tuple[str, DecodeOptions]]:
    """(row label, options) for one method; nat gets one row per number of length candidates."""
    base = DecodeOptions(method=method, beam_size=args.beam_size, ctc_weight=args.ctc_weight, task=args.task)
    if method == "attention":
        return [(f"attention beam {args.beam_size}", base)]
    if method in ("ctc_prefix_beam", "attention_rescoring"):
        return [(f"{method} beam {args.beam_size}", base)]
    if method == "nat":
        return [(f"nat {k} length{'s' if k > 1 else ''}", base.replace(nat_length_candidates=k))
                for k in args.nat_candidates]
    return [(method, base)]


def markdown(rows: list[Row], reference: float | None) -> str:
    lines = ["| model | method | WER % | CER % | RTF | tokens/s | x attention |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        speed = f"{reference / r.seconds:.1f}" if reference else "-"
        lines.append(f"| {r.model} | {r.method} | {100 * r.wer:.2f} | {100 * r.cer:.2f} | {r.rtf:.4f} | "
                     f"{r.tokens_per_s:.0f} | {speed} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dirs", nargs="+", type=Path, help="model directories (exp/<name>/model)")
    parser.add_argument("--manifest", type=Path, required=True, help="test manifest (JSONL with text)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated methods to try (each model runs those it supports)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--ctc-weight", type=float, default=0.3)
    parser.add_argument("--nat-candidates", default="1", help="comma-separated numbers of NAT length candidates")
    parser.add_argument("--task", default="asr", help="forced task token, when the tokenizer has one")
    parser.add_argument("--batch-seconds", type=float, default=60.0, help="padded audio seconds per batch")
    parser.add_argument("--limit", type=int, default=None, help="decode only the first N utterances")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per method (the fastest counts)")
    args = parser.parse_args()
    args.nat_candidates = [int(k) for k in args.nat_candidates.split(",")]
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {unknown}; methods are {', '.join(METHODS)}")
    torch.set_num_threads(args.threads)

    rows: list[Row] = []
    audio_seconds = 0.0
    for model_dir in args.model_dirs:
        speech = load_model(model_dir, device=args.device)
        data, refs, audio_seconds = batches(speech, args.manifest, args.batch_seconds, args.limit)
        name = model_dir.parent.name if model_dir.name == "model" else model_dir.name
        supported = available_methods(speech.model)
        for method in (m for m in methods if m in supported):
            for label, options in variants(method, args):
                hyps, tokens, seconds = run(speech, data, options, args.repeats)
                scores = error_rate(refs, hyps)
                rtf = seconds / audio_seconds
                rows.append(Row(name, label, scores.wer, scores.cer, rtf, tokens / seconds, seconds))
                print(f"{name} {label}: WER {100 * scores.wer:.2f} %, RTF {rtf:.4f}",
                      file=sys.stderr, flush=True)
    reference = next((r.seconds for r in rows if r.method.startswith("attention beam")), None)
    print(f"{len(refs)} utterances, {audio_seconds:.1f} s of audio, {args.threads} threads, device {args.device}")
    print(markdown(rows, reference))
    print(json.dumps({"utterances": len(refs), "audio_seconds": audio_seconds, "threads": args.threads,
                      "device": args.device, "beam_size": args.beam_size, "repeats": args.repeats,
                      "rows": [r.__dict__ | {"x_attention": reference / r.seconds if reference else None}
                               for r in rows]}))


if __name__ == "__main__":
    main()
