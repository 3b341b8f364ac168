"""asr-wer: score hypotheses against references (WER/CER/SER, or BLEU/chrF for translation).

    asr-wer REF HYP [--details] [--top N] [--json] [--metric wer|cer|bleu]

REF and HYP are Kaldi-style `utt_id text` files or JSON Lines manifests with a text field; ids
are matched, and ids present on one side only are an error that lists them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from asr.scoring import METRICS, ScoringError, pair_transcripts, read_transcripts, score_bleu, score_wer
from asr.text.normalize import TextNormalizer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr-wer", description="Score hypotheses against references: WER, CER and sentence error rate "
        "(jiwer), or BLEU and chrF (sacrebleu) for translation.")
    parser.add_argument("ref", help="references: Kaldi-style 'utt_id text' lines, or a JSONL manifest")
    parser.add_argument("hyp", help="hypotheses, in either format (e.g. the output of asr-transcribe)")
    parser.add_argument("--metric", choices=METRICS, default="wer",
                        help="wer or cer: both print WER, CER and SER (cer, the figure for scripts written "
                        "without spaces, is what a recipe's score.metric=cer puts first); bleu: BLEU and chrF")
    parser.add_argument("--details", action="store_true",
                        help="print each utterance's alignment (sclite-style) and the most frequent confusions")
    parser.add_argument("--top", type=int, default=10, metavar="N", help="how many confusions to list (default 10)")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.add_argument("--ref-field", default="text",
                        help="the manifest field holding the reference (default text; target_text for translation)")
    parser.add_argument("--hyp-field", default="text", help="the manifest field holding the hypothesis (default text)")
    norm = parser.add_mutually_exclusive_group()
    norm.add_argument("--no-normalize", action="store_true",
                      help="score the texts as they are (only whitespace is collapsed)")
    norm.add_argument("--normalizer-from", metavar="MODEL_DIR",
                      help="use the text normaliser saved with this model's tokenizer (default: the default one, "
                      "as in training)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        normalizer = _normalizer(args)
        refs = read_transcripts(args.ref, field=args.ref_field)
        hyps = read_transcripts(args.hyp, field=args.hyp_field)
        ids, ref_texts, hyp_texts = pair_transcripts(refs, hyps, args.ref, args.hyp)
    except (ScoringError, OSError, ValueError) as error:
        print(f"asr-wer: error: {error}", file=sys.stderr)
        return 2

    if args.metric == "bleu":
        scores = score_bleu(ref_texts, hyp_texts, normalizer)
        if args.json:
            print(json.dumps(scores, indent=1, ensure_ascii=False))
        else:
            print(f"BLEU {scores['bleu']:.2f}   ({scores['bleu_detail']})\n"
                  f"chrF {scores['chrf']:.2f}\nScored {scores['num_utts']} utterances.\n"
                  f"BLEU signature: {scores['bleu_signature']}\nchrF signature: {scores['chrf_signature']}")
        return 0

    report = score_wer(ids, ref_texts, hyp_texts, normalizer)
    if args.json:
        print(json.dumps(report.to_dict(details=args.details, top=args.top), indent=1, ensure_ascii=False))
        return 0
    if args.details:
        print(report.details(args.top))
    print(report.summary(), end="")
    return 0


def _normalizer(args: argparse.Namespace) -> TextNormalizer | None:
    if args.no_normalize:
        return None
    if args.normalizer_from:
        from asr.text import load_tokenizer

        return load_tokenizer(args.normalizer_from).normalizer
    return TextNormalizer()


if __name__ == "__main__":
    sys.exit(main())
