"""Batched greedy decoding with the decoder's incremental (KV-cached) API."""

from __future__ import annotations

import torch
from torch import Tensor

from asr.decode.methods import nonautoregressive_greedy
from asr.model.config import EOS_ID, SOS_ID
from asr.model.nat import NonAutoregressiveModel


@torch.no_grad()
def greedy_search(
    model: torch.nn.Module,
    feats: Tensor,
    feat_lengths: Tensor,
    prefix: Tensor | None = None,
    max_len_ratio: float = 1.0,
    max_len: int = 448,
    check_every: int = 8,
) -> list[list[int]]:
    """Decode a batch by taking the most probable token at every step, all utterances at once.

    model: an ASRModel (encode(feats, lengths), decoder.init_state / decoder.step).
    feats (B, T, F), feat_lengths (B,): features (CMVN is applied by the model).
    prefix (B, P) or None: tokens forced after <sos> (task/language tokens), the same length in every row.
    max_len_ratio: an utterance stops after ratio x its encoder frames tokens (at least 1);
    max_len: and after at most this many tokens.
    check_every: steps between host-side "all finished?" checks (the only syncs in the loop).
    Returns, per utterance, the token ids without <sos>, the prefix and <eos>. A non-autoregressive
    model (NAT, Mask-CTC) is decoded its own way (asr.decode.methods.nonautoregressive_greedy).
    """
    if feats.dim() != 3:
        raise ValueError(f"greedy_search: feats must be (B, T, F), got shape {tuple(feats.shape)}")
    if getattr(model, "decoder", None) is None:
        raise ValueError("greedy_search needs an attention decoder; this model has none (ctc_weight=1.0)")
    if isinstance(model, NonAutoregressiveModel):  # NAT / Mask-CTC: their own one-pass decoding
        return nonautoregressive_greedy(model, feats, feat_lengths, prefix, max_len_ratio, max_len)
    was_training = model.training
    model.eval()
    try:
        enc, enc_lengths = model.encode(feats, feat_lengths)
        batch = enc.size(0)
        device = enc.device
        decoder = model.decoder
        state = decoder.init_state(enc, enc_lengths)

        # Feed <sos> and the forced prefix; the logits after the last of them give the first token.
        forced = torch.full((batch, 1), SOS_ID, dtype=torch.long, device=device)
        if prefix is not None and prefix.numel() > 0:
            forced = torch.cat([forced, prefix.to(device=device, dtype=torch.long)], dim=1)
        for t in range(forced.size(1)):
            logits, state = decoder.step(forced[:, t], state)

        limits = torch.clamp((enc_lengths.float() * max_len_ratio).long(), min=1, max=max_len)
        steps = int(limits.max()) if batch else 0  # one sync, before the loop
        tokens = torch.full((batch, max(steps, 1)), EOS_ID, dtype=torch.long, device=device)
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        for t in range(steps):
            next_token = logits.argmax(dim=-1)
            # Finished rows keep emitting <eos>, so they stay finished and cost no branching.
            next_token = torch.where(finished, torch.full_like(next_token, EOS_ID), next_token)
            tokens[:, t] = next_token
            finished |= (next_token == EOS_ID) | (t + 1 >= limits)
            if t + 1 == steps or ((t + 1) % check_every == 0 and bool(finished.all())):
                break
            logits, state = decoder.step(next_token, state)

        # Cut each row at its first <eos> (one transfer to the host for the whole batch).
        is_eos = tokens == EOS_ID
        lengths = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1), tokens.size(1))
        lengths = torch.minimum(lengths, limits)
        rows = tokens.cpu().tolist()
        return [row[:n] for row, n in zip(rows, lengths.cpu().tolist())]
    finally:
        model.train(was_training)
