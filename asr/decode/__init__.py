"""Decoding: turning encoder outputs into token sequences.

    from asr.decode import DecodeOptions, decode
    results = decode(model, feats, feat_lengths, DecodeOptions(beam_size=5, ctc_weight=0.3), tokenizer=tokenizer)

`decode` is the one search entry point: batched beam search with CTC/LM scorers, or another method
chosen by DecodeOptions.method (CTC greedy / prefix beam, attention rescoring, NAT, Mask-CTC; see
asr/decode/methods.py). `greedy_search` is the lean greedy loop that training validation uses.
"""

from asr.decode.greedy import greedy_search
from asr.decode.methods import available_methods
from asr.decode.options import METHODS, DecodeOptions, DecodeResult, Segment
from asr.decode.scorers import SCORERS, CTCPrefixScorer, Scorer, scorer_weights
from asr.decode.search import decode, forced_prefix

__all__ = [
    "METHODS", "SCORERS", "CTCPrefixScorer", "DecodeOptions", "DecodeResult", "Scorer", "Segment",
    "available_methods", "decode", "forced_prefix", "greedy_search", "scorer_weights",
]
