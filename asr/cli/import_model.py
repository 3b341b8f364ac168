"""asr-import: convert a pretrained Whisper or Speech2Text checkpoint into an asr model directory.

    asr-import whisper CHECKPOINT.pt OUT_DIR [--vocab multilingual.tiktoken]
    asr-import hf DIR OUT_DIR [--vocab FILE]

`whisper` reads an openai-whisper checkpoint (safely: tensors only); `hf` a transformers
WhisperForConditionalGeneration or Speech2TextForConditionalGeneration directory (config.json with
model.safetensors or pytorch_model.bin, and the tokenizer files). The output is an ordinary model
directory: `asr-transcribe OUT_DIR audio.wav` and `asr.load_model(OUT_DIR)` use it unchanged. Nothing
is downloaded: Whisper's vocabulary comes from the checkpoint's directory, --vocab, or the
installed openai-whisper package. Exit status 2 when the input cannot be converted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr-import", description="Convert a pretrained Whisper or Speech2Text "
                                     "checkpoint into an asr model directory.")
    formats = parser.add_subparsers(dest="format", required=True, metavar="{whisper,hf}")
    whisper = formats.add_parser("whisper", help="an openai-whisper checkpoint (.pt)")
    whisper.add_argument("checkpoint", help="the .pt file (as whisper.load_model downloads them)")
    hf = formats.add_parser("hf", help="a transformers Whisper or Speech2Text model directory")
    hf.add_argument("checkpoint", metavar="dir", help="the directory (config.json, weights, tokenizer files)")
    for sub in (whisper, hf):
        sub.add_argument("out_dir", help="the model directory to write")
        sub.add_argument("--vocab", default=None, help="Whisper only: the vocabulary file (multilingual.tiktoken "
                         "or gpt2.tiktoken, tokenizer.json, vocab.json) when the checkpoint has none beside it")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from asr.model.io import load_model
    from asr.pretrained import import_hf, import_whisper

    try:
        if args.format == "whisper":
            out = import_whisper(args.checkpoint, args.out_dir, args.vocab)
        else:
            out = import_hf(args.checkpoint, args.out_dir, args.vocab)
        speech = load_model(out)  # proves the directory loads
    except (ValueError, OSError) as error:
        print(f"asr-import: error: {error}", file=sys.stderr)
        return 2
    print(f"asr-import: wrote {out}: {speech!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
