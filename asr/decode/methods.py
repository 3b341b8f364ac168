"""Decoding methods other than the attention beam search, and which model can use which.

asr.decode.decode(...) is the one entry point; for DecodeOptions.method != "attention" it hands over
to `decode_method` here. What each method returns (DecodeResult):

    method               needs                      score                                   n-best
    attention            autoregressive decoder     see asr/decode/search.py                yes
                         (or CTC, ctc_weight=1)
    ctc_greedy           CTC head                   log-probability of the best path        no
    ctc_prefix_beam      CTC head                   log P_ctc(y | x)                        yes
    attention_rescoring  CTC head and an            (1 - ctc_weight) log p_att(y, <eos>)    yes
                         autoregressive decoder     + ctc_weight log P_ctc(y) (+ LM, bonus)
    nat                  decoder kind "nat"         see asr/decode/nat.py                   k > 1
    maskctc              decoder kind "maskctc"     see asr/decode/maskctc.py               no

token_logprobs: the decoder's for attention and attention_rescoring (with <eos>), the NAT decoder's
for nat, see asr/decode/maskctc.py for maskctc; none for the CTC methods.
The CTC methods and maskctc read the CTC head, which models the source transcript: they cannot
translate (task "st"). lm_weight > 0 is for attention and attention_rescoring only. max_len and
max_len_ratio limit attention and nat; the CTC-based methods emit at most one token per frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from asr.decode.ctc_decode import Hypothesis, attention_rescoring, ctc_greedy, ctc_prefix_beam_search
from asr.decode.maskctc import maskctc_search
from asr.decode.nat import nat_search
from asr.decode.options import DecodeOptions, DecodeResult
from asr.model.config import BLANK_ID, EOS_ID, PAD_ID, SOS_ID
from asr.model.maskctc import MaskCTCModel
from asr.model.nat import NATModel, NonAutoregressiveModel
from asr.text import Tokenizer

CTC_METHODS = ("ctc_greedy", "ctc_prefix_beam", "attention_rescoring", "maskctc")  # read the CTC head
LM_METHODS = ("attention", "attention_rescoring")


def decoder_type(model: nn.Module) -> str:
    """"autoregressive", "nat", "maskctc", or "none" (a CTC-only model)."""
    if model.decoder is None:
        return "none"
    if isinstance(model, NATModel):
        return "nat"
    if isinstance(model, MaskCTCModel):
        return "maskctc"
    return "autoregressive"


def available_methods(model: nn.Module) -> list[str]:
    """The decoding methods this model supports (CTC-only models also take attention with ctc_weight=1)."""
    kind = decoder_type(model)
    methods = ["attention"] if kind == "autoregressive" else [kind] if kind in ("nat", "maskctc") else []
    if model.ctc is not None:
        methods += ["ctc_greedy", "ctc_prefix_beam"] + (["attention_rescoring"] if kind == "autoregressive" else [])
    return methods


def check_method(model: nn.Module, options: DecodeOptions, lm: nn.Module | None = None) -> None:
    """Raise ValueError, naming the problem, when `model` cannot decode with options.method."""
    method, kind = options.method, decoder_type(model)
    usable = ", ".join(available_methods(model)) or "none"
    where = f"DecodeOptions.method={method!r}"
    if method == "attention":
        if isinstance(model, NonAutoregressiveModel) and options.ctc_weight < 1.0:
            raise ValueError(f"{where} needs an autoregressive attention decoder, but this model's decoder is "
                             f"{kind!r} (non-autoregressive); this model decodes with: {usable}")
        return  # the beam search checks the rest (asr/decode/search.py)
    if method in ("nat", "maskctc") and kind != method:
        raise ValueError(f"{where} needs a model trained with decoder kind {method!r}, but this model's decoder is "
                         f"{kind!r}; this model decodes with: {usable}")
    if method in CTC_METHODS and model.ctc is None:
        raise ValueError(f"{where} needs a CTC head, but this model has none (it was trained with ctc_weight=0); "
                         f"this model decodes with: {usable}")
    if method == "attention_rescoring" and kind != "autoregressive":
        raise ValueError(f"{where} needs an autoregressive attention decoder to rescore with, but this model's "
                         f"decoder is {kind!r}; this model decodes with: {usable}")
    if method in CTC_METHODS and options.task == "st":
        raise ValueError(f"{where} with task='st': it starts from the CTC head, which models the source-language "
                         "transcript, not the translation; translate with method=attention (or nat)")
    if options.lm_weight > 0 and method not in LM_METHODS:
        raise ValueError(f"DecodeOptions.lm_weight={options.lm_weight}: language-model fusion is for method="
                         f"{' or '.join(LM_METHODS)}, not {method!r}")
    if options.lm_weight > 0 and lm is None:
        raise ValueError(f"DecodeOptions.lm_weight={options.lm_weight} needs a language model (lm=...)")
    if method == "nat":
        _check_nat(model, options)


def _check_nat(model: NATModel, options: DecodeOptions) -> None:
    if model.decoder.length_mode == "eos":
        for name, value, default in (("nat_length_candidates", options.nat_length_candidates, 1),
                                     ("nat_length_source", options.nat_length_source, "predictor")):
            if value != default:
                raise ValueError(f"DecodeOptions.{name}={value!r}: this NAT model cuts its output at the first "
                                 "<eos> (length_mode='eos'); it has no length candidates to choose")
    if options.nat_length_source == "ctc" and (model.ctc is None or options.task == "st"):
        why = "this model has no CTC head" if model.ctc is None else "with task='st' CTC models the source"
        raise ValueError(f"DecodeOptions.nat_length_source='ctc': {why}; use 'predictor'")
    rescoring = options.nat_length_candidates > 1 and model.ctc is not None and options.ctc_weight > 0
    if rescoring and options.task == "st":
        raise ValueError(f"DecodeOptions.ctc_weight={options.ctc_weight} with task='st': NAT length candidates would "
                         "be rescored by the CTC head, which models the source transcript; set ctc_weight=0")


@torch.no_grad()
def decode_method(model: nn.Module, feats: Tensor, feat_lengths: Tensor, options: DecodeOptions, *,
                  tokenizer: Tokenizer, lm: nn.Module | None = None) -> list[DecodeResult]:
    """asr.decode.decode for options.method != "attention": feats (B, T, F), feat_lengths (B,) -> one
    DecodeResult per utterance."""
    from asr.decode.search import forced_prefix  # search.py dispatches here: import at call time

    check_method(model, options, lm)
    if feats.dim() != 3 or feat_lengths.shape != feats.shape[:1]:
        raise ValueError(f"decode: expected feats (B, T, F) and feat_lengths (B,), got shapes {tuple(feats.shape)} "
                         f"and {tuple(feat_lengths.shape)}")
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ValueError(f"decode: the tokenizer has {tokenizer.vocab_size} tokens but the model "
                         f"{model.config.vocab_size}")
    if lm is not None and options.lm_weight > 0 and lm.config.vocab_size != model.config.vocab_size:
        raise ValueError(f"decode: the language model has {lm.config.vocab_size} tokens but the model "
                         f"{model.config.vocab_size}")
    prefix = forced_prefix(tokenizer, options)
    if None in prefix:  # a language token to detect: only the autoregressive search does that
        raise ValueError(f"DecodeOptions.method={options.method!r}: this tokenizer detects the language from the "
                         "audio, which only method='attention' does; name the language (target_lang)")
    if feats.size(0) == 0:
        return []
    modules = [m for m in (model, lm) if m is not None]
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        enc, enc_lengths = model.encode(feats, feat_lengths)
        prefix_ids = torch.tensor(prefix, dtype=torch.long, device=enc.device).expand(enc.size(0), -1)
        hyps = run_method(model, enc, enc_lengths, prefix_ids, options, tokenizer.skipped_ids, lm)
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)
    return [_result(h[: options.nbest], tokenizer) for h in hyps]


def run_method(model: nn.Module, enc: Tensor, enc_lengths: Tensor, prefix: Tensor, options: DecodeOptions,
               skipped: Sequence[int] | frozenset[int], lm: nn.Module | None = None) -> list[list[Hypothesis]]:
    """The search of options.method on encoder output: enc (B, T, D), enc_lengths (B,), prefix (B, P);
    skipped: ids never emitted besides the blank / <eos> (specials, task and language tokens).
    -> per utterance, its hypotheses best first."""
    method = options.method
    blocked = sorted(set(skipped) - {BLANK_ID, EOS_ID})
    ctc_blocked = blocked + [EOS_ID]  # CTC never emits <eos>; <blank> is its own business
    if method == "ctc_greedy":
        greedy = ctc_greedy(model.ctc.log_probs(enc), enc_lengths, ctc_blocked)
        tokens, lengths, scores = (x.cpu().tolist() for x in (greedy.tokens, greedy.lengths, greedy.path_logprob))
        return [[Hypothesis(tuple(row[:n]), score)] for row, n, score in zip(tokens, lengths, scores)]
    if method in ("ctc_prefix_beam", "attention_rescoring"):
        nbest = ctc_prefix_beam_search(model.ctc.log_probs(enc), enc_lengths, options.beam_size, ctc_blocked)
        if method == "ctc_prefix_beam":
            return nbest
        return attention_rescoring(model.decoder, enc, enc_lengths, prefix, nbest, options.ctc_weight,
                                   options.length_bonus, lm, options.lm_weight, sorted(set(skipped) - {EOS_ID}))
    if method == "nat":
        limits = torch.clamp((enc_lengths.float() * options.max_len_ratio).long(), min=1, max=options.max_len)
        return nat_search(model, enc, enc_lengths, prefix, limits, options, [*blocked, BLANK_ID])
    if method == "maskctc":
        hyps = maskctc_search(model, enc, enc_lengths, prefix, options.maskctc_threshold,
                              options.maskctc_iterations, [*blocked, BLANK_ID, EOS_ID])
        return [[h] for h in hyps]
    raise ValueError(f"DecodeOptions.method={method!r}: not a method run_method handles")


def nonautoregressive_greedy(model: NonAutoregressiveModel, feats: Tensor, feat_lengths: Tensor,
                             prefix: Tensor | None, max_len_ratio: float, max_len: int) -> list[list[int]]:
    """What asr.decode.greedy_search does for a non-autoregressive model (training validation): its own
    decoding with default settings (one length; Mask-CTC's default threshold and passes). No tokenizer:
    only <blank>, <sos>, <pad> (and <eos>) are never emitted."""
    kind = decoder_type(model)
    options = DecodeOptions(method=kind, max_len_ratio=max_len_ratio, max_len=max_len)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            enc, enc_lengths = model.encode(feats, feat_lengths)
            if prefix is None:
                prefix = torch.zeros(enc.size(0), 0, dtype=torch.long, device=enc.device)
            hyps = run_method(model, enc, enc_lengths, prefix.to(device=enc.device, dtype=torch.long), options,
                              (BLANK_ID, SOS_ID, PAD_ID))
    finally:
        model.train(was_training)
    return [list(h[0].tokens) for h in hyps]


def _result(hyps: list[Hypothesis], tokenizer: Tokenizer) -> DecodeResult:
    results = [DecodeResult(h.tokens, tokenizer.decode(h.tokens), h.score, h.token_logprobs) for h in hyps]
    best = results[0] if results else DecodeResult((), "", float("-inf"))
    return DecodeResult(best.tokens, best.text, best.score, best.token_logprobs, tuple(results))
