"""asr-transcribe: transcribe (or translate) audio files, folders and manifests with a trained model.

    asr-transcribe MODEL_DIR PATH... [--method attention] [--beam-size 5] [--ctc-weight 0.3] [--batch-size N]
                   [--output-dir D] [--output-format txt|json|srt|vtt|all] [--task asr|st --target-lang de]
                   [--device cpu|cuda] [--dtype float32|bfloat16|float16]

Without --output-dir, transcripts go to stdout as Kaldi-style `id text` lines (txt, ready for
asr-wer) or JSON lines (json). A progress bar and the final summary go to stderr. Bad files are
reported, skipped and listed at the end; the exit status is 1 when any file failed, 2 for bad
arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asr.transcribe import AudioInput


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr-transcribe", description="Transcribe or translate audio with a trained asr model. Long audio is "
        "cut into segments (voice activity or fixed windows) with timestamps.")
    parser.add_argument("model_dir", help="a model directory (config.yaml, model.pt, tokenizer.json)")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="audio files, folders (searched recursively) or JSONL manifests")
    decoding = parser.add_argument_group("decoding")
    decoding.add_argument("--method", default="attention",
                          help="attention (beam search, default), ctc_greedy, ctc_prefix_beam, attention_rescoring "
                          "(CTC n-best rescored by the decoder), nat (non-autoregressive decoder) or maskctc "
                          "(Mask-CTC decoder); which ones a model supports depends on how it was trained")
    decoding.add_argument("--beam-size", type=int, default=5, help="beam width (1 with --ctc-weight 0: greedy)")
    decoding.add_argument("--ctc-weight", type=float, default=None,
                          help="weight of CTC prefix scores in [0, 1] (default 0.3; 0 with --task st, since CTC "
                          "models the source transcript)")
    decoding.add_argument("--lm", default=None, metavar="DIR",
                          help="language-model directory for shallow fusion (e.g. exp/synth_asr/lm/model from "
                          "the recipes' lm stage); trained with the same tokenizer as the model")
    decoding.add_argument("--lm-weight", type=float, default=0.0, help="shallow fusion weight (needs --lm)")
    decoding.add_argument("--length-penalty", type=float, default=0.0, help="rank by score / length ** this")
    decoding.add_argument("--max-len-ratio", type=float, default=1.0,
                          help="at most this many tokens per encoder frame (after subsampling)")
    decoding.add_argument("--task", choices=("asr", "st"), default=None, help="asr (transcribe) or st (translate)")
    decoding.add_argument("--target-lang", default=None, help="translation target language, e.g. de")
    decoding.add_argument("--batch-size", type=int, default=16, metavar="N", help="most segments per batch")
    decoding.add_argument("--batch-seconds", type=float, default=120.0, metavar="S",
                          help="most padded audio seconds per batch (segments x longest)")
    decoding.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    # asr.model.io.DTYPES, spelled out: that module imports torch, which --help skips (a test keeps them equal).
    decoding.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                          help="what the model computes in: bfloat16 is faster on CPUs with AMX or AVX512-BF16 "
                               "(slower on others), float16 on GPUs")
    segments = parser.add_argument_group("long audio")
    segments.add_argument("--segment", choices=("vad", "window"), default="vad",
                          help="cut long audio at pauses (vad, default) or into overlapping fixed windows")
    segments.add_argument("--max-segment", type=float, default=20.0, metavar="S",
                          help="audio longer than this is cut; the longest segment / the window length")
    segments.add_argument("--overlap", type=float, default=4.0, metavar="S", help="window overlap in seconds")
    output = parser.add_argument_group("output")
    output.add_argument("--output-dir", metavar="D", help="write <id>.<format> files here instead of to stdout")
    output.add_argument("--output-format", default="txt", metavar="FMT",
                        help="txt, json, srt, vtt, a comma-separated list, or all (srt/vtt need --output-dir)")
    output.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Heavy imports after argument parsing, so that --help is instant.
    import torch
    from tqdm import tqdm

    from asr.data.manifest import ManifestError
    from asr.decode.options import DecodeOptions
    from asr.model.io import load_model
    from asr.output import parse_formats, write_outputs
    from asr.segment import SegmenterConfig
    from asr.transcribe import check_options, collect_inputs, iter_transcribe

    try:
        ctc_weight = args.ctc_weight if args.ctc_weight is not None else 0.0 if args.task == "st" else 0.3
        options = DecodeOptions(beam_size=args.beam_size, ctc_weight=ctc_weight, lm_weight=args.lm_weight,
                                length_penalty=args.length_penalty, max_len_ratio=args.max_len_ratio, task=args.task,
                                target_lang=args.target_lang, method=args.method)
        segmenter = SegmenterConfig(method=args.segment, max_segment_s=args.max_segment, overlap_s=args.overlap)
        formats = parse_formats(args.output_format)
        if args.output_dir is None and (len(formats) > 1 or formats[0] not in ("txt", "json")):
            raise ValueError(f"--output-format {args.output_format} needs --output-dir (stdout takes txt or json)")
        if args.batch_size < 1 or args.batch_seconds <= 0:
            raise ValueError("--batch-size must be >= 1 and --batch-seconds > 0")
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available here")
        inputs = collect_inputs(args.paths)
        if not inputs:
            raise ValueError(f"no audio files found in {', '.join(args.paths)}")
        if args.lm_weight > 0 and args.lm is None:
            raise ValueError("--lm-weight needs a language model: pass --lm DIR")
        speech = load_model(args.model_dir, device=device, lm=args.lm, dtype=args.dtype)
        check_options(speech, options)
    except (ValueError, OSError, ManifestError) as error:
        print(f"asr-transcribe: error: {error}", file=sys.stderr)
        return 2

    failures: list[tuple[AudioInput, Exception]] = []
    bar = tqdm(total=len(inputs), unit="file", file=sys.stderr, disable=args.quiet, dynamic_ncols=True)

    def report(item: AudioInput, error: Exception) -> None:
        failures.append((item, error))
        bar.write(f"asr-transcribe: skipped {_describe(item, error)}", file=sys.stderr)
        bar.update(1)

    started, audio_seconds, done = time.perf_counter(), 0.0, 0
    try:
        for item, result, duration in iter_transcribe(speech, inputs, options, batch_seconds=args.batch_seconds,
                                                      batch_size=args.batch_size, segmenter=segmenter,
                                                      on_error=report):
            assert item.id is not None
            if args.output_dir:
                write_outputs(args.output_dir, item.id, result, formats)
            elif formats == ("json",):
                print(json.dumps({"id": item.id} | result.to_dict(), ensure_ascii=False), flush=True)
            else:
                print(f"{item.id} {result.text}".rstrip(), flush=True)
            audio_seconds += duration
            done += 1
            bar.update(1)
    except KeyboardInterrupt:
        bar.close()
        print(f"asr-transcribe: interrupted after {done} files", file=sys.stderr)
        return 130
    bar.close()
    elapsed = time.perf_counter() - started
    print(_summary(done, audio_seconds, elapsed, failures), file=sys.stderr, end="")
    return 1 if failures else 0


def _describe(item: AudioInput, error: Exception) -> str:
    """The error's message, naming the input when the message does not already."""
    message = str(error)
    return message if item.name in message else f"{item.name}: {message}"


def _summary(done: int, audio_seconds: float, elapsed: float, failures: list[tuple[AudioInput, Exception]]) -> str:
    rtf = f", real-time factor {elapsed / audio_seconds:.3f}" if audio_seconds > 0 else ""
    text = (f"asr-transcribe: transcribed {done} file(s), {_clock(audio_seconds)} of audio, in {elapsed:.1f} s{rtf}"
            f"; {len(failures)} failed\n")
    for item, error in failures:
        text += f"  FAILED {_describe(item, error)}\n"
    return text


def _clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:04.1f}"


if __name__ == "__main__":
    sys.exit(main())
