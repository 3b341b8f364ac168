"""Validation: loss and token accuracy on the validation set; on its first utterances the WER of greedy
decoding with the attention decoder (valid_wer) and with the CTC head (valid_ctc_wer, against the CTC
targets: the source transcript in translation)."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from asr.data import Batch, collate
from asr.decode import greedy_search
from asr.decode.ctc_decode import ctc_greedy
from asr.metrics import error_rate
from asr.model.config import EOS_ID, SOS_ID
from asr.train.distributed import DistInfo, all_reduce_sum

# Scalars an ASRModel's forward can return ("acc"/"att_loss" need a decoder, "ctc_loss" a CTC head).
_OUTPUTS = ("loss", "att_loss", "ctc_loss", "acc")


@dataclass(frozen=True)
class AttentionExample:
    """One validation utterance's cross-attention (decoder's last layer, mean over heads)."""

    utt_id: str
    weights: Tensor  # (U, T') output tokens x encoder frames
    tokens: list[str] | None  # labels of the U rows, when a tokenizer is given


def _shard_batches(size: int, batch_size: int, dist: DistInfo) -> list[list[int]]:
    """This process's share of the validation set, in order, `batch_size` utterances a batch."""
    indices = list(range(dist.rank, size, dist.world_size))
    return [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]


def _to_text(ids: list[int], tokenizer: Any) -> str:
    # Without a tokenizer every token id counts as a "word": the WER becomes a token error rate.
    return tokenizer.decode(ids) if tokenizer is not None else " ".join(map(str, ids))


def attention_example(model: nn.Module, batch: Batch, tokenizer: Any = None) -> AttentionExample:
    """Teacher-forced cross-attention of the batch's first utterance (its reference after <sos> + prefix)."""
    n = int(batch.target_lengths[0])
    tokens = torch.cat([batch.targets.new_tensor([SOS_ID]), batch.prefix[0], batch.targets[0, :n]]).unsqueeze(0)
    enc, enc_lengths = model.encode(batch.feats[:1], batch.feat_lengths[:1])
    weights = model.decoder.cross_attention_weights(tokens, enc, enc_lengths, layer=-1)  # (1, H, U, T')
    weights = weights[0].float().mean(dim=0)[:, : int(enc_lengths[0])]
    labels = None
    if tokenizer is not None:
        # Row u is the step that predicts output u+1: label it with the token it predicts.
        labels = [tokenizer.id_to_token(int(t)) for t in tokens[0, 1:].tolist()] + [tokenizer.id_to_token(EOS_ID)]
    return AttentionExample(batch.ids[0], weights.cpu(), labels)


@torch.no_grad()
def validate(
    model: nn.Module,
    dataset: Dataset,
    sampler: Sampler[list[int]] | None,
    tokenizer: Any,
    *,
    device: torch.device,
    batch_size: int = 16,
    decode_utts: int = 20,
    autocast_dtype: torch.dtype | None = None,
    dist: DistInfo | None = None,
    want_attention: bool = False,
) -> tuple[dict[str, float], AttentionExample | None]:
    """-> ({"valid_loss", "valid_acc", "valid_wer", "valid_ctc_wer", ...}, attention of the first
    utterance or None).

    Losses and accuracy are averaged over target tokens (each batch weighted by its tokens + <eos>),
    summed over all processes. The WERs are over the first `decode_utts` utterances (split across
    processes), decoded greedily: valid_wer/valid_cer with the decoder (left out without one),
    valid_ctc_wer with the CTC head (left out without one); none when decode_utts is 0. Neither is
    the recipes' joint beam search, which is usually better than both.
    """
    dist = dist or DistInfo()
    model.eval()
    has_decoder = getattr(model, "decoder", None) is not None
    has_ctc = getattr(model, "ctc", None) is not None
    batches = sampler if sampler is not None else _shard_batches(len(dataset), batch_size, dist)
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate)
    quota = math.ceil(decode_utts / dist.world_size) if has_decoder or has_ctc else 0
    taken = 0
    context = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    # Fixed layout (value sums, then weight sums) so that every process all-reduces the same vector,
    # also one that got no validation batch.
    sums = torch.zeros(2 * len(_OUTPUTS), dtype=torch.float64, device=device)
    refs: list[str] = []
    hyps: list[str] = []
    ctc_refs: list[str] = []
    ctc_hyps: list[str] = []
    attention = None
    for batch in loader:
        batch = batch.to(device)
        with context:
            out = model(batch)
            weight = (batch.target_lengths.sum() + batch.target_lengths.numel()).double()
            for i, key in enumerate(_OUTPUTS):
                if key in out:
                    sums[i] += out[key].double() * weight
                    sums[len(_OUTPUTS) + i] += weight
            take = min(quota - taken, len(batch.ids))
            if take > 0:
                taken += take
                if has_decoder:
                    decoded = greedy_search(model, batch.feats[:take], batch.feat_lengths[:take],
                                            batch.prefix[:take])
                    refs += _texts(batch.targets[:take], batch.target_lengths[:take], tokenizer)
                    hyps += [_to_text(row, tokenizer) for row in decoded]
                if has_ctc:
                    enc, enc_lengths = model.encode(batch.feats[:take], batch.feat_lengths[:take])
                    greedy = ctc_greedy(model.ctc.log_probs(enc), enc_lengths)
                    ctc_refs += _texts(batch.ctc_targets[:take], batch.ctc_target_lengths[:take], tokenizer)
                    ctc_hyps += _texts(greedy.tokens, greedy.lengths, tokenizer)
            if want_attention and attention is None and has_decoder:
                attention = attention_example(model, batch, tokenizer)
    scores, ctc_scores = error_rate(refs, hyps), error_rate(ctc_refs, ctc_hyps)
    counts = (scores.word_errors, scores.ref_words, scores.char_errors, scores.ref_chars, scores.num_utts,
              ctc_scores.word_errors, ctc_scores.ref_words, ctc_scores.num_utts, taken)
    local = torch.cat([sums, torch.tensor(counts, dtype=torch.float64, device=device)])
    total = all_reduce_sum(local, dist).cpu().tolist()
    n = len(_OUTPUTS)
    metrics = {f"valid_{key}": total[i] / total[n + i] for i, key in enumerate(_OUTPUTS) if total[n + i] > 0}
    word_errors, ref_words, char_errors, ref_chars, decoded, ctc_errors, ctc_words, ctc_decoded, taken = total[2 * n :]
    if decoded > 0:
        metrics.update(valid_wer=word_errors / max(ref_words, 1.0), valid_cer=char_errors / max(ref_chars, 1.0))
    if ctc_decoded > 0:
        metrics.update(valid_ctc_wer=ctc_errors / max(ctc_words, 1.0))
    if taken > 0:
        metrics.update(valid_decoded_utts=int(taken))
    return metrics, attention


def _texts(tokens: Tensor, lengths: Tensor, tokenizer: Any) -> list[str]:
    """Padded token rows (B, L) cut at their lengths (B,) -> texts."""
    return [_to_text(row[:n], tokenizer) for row, n in zip(tokens.tolist(), lengths.tolist())]
