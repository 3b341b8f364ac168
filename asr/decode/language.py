"""Language detection for the forced prefix: Whisper-style models are told the spoken language by a
token after <sos>; when the options do not name it, the decoder picks it from the audio.

The detection is openai-whisper's: one decoder step from <sos> alone, and the most probable of the
tokenizer's language tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from asr.text import Tokenizer


@torch.no_grad()
def detect_language(model: nn.Module, enc: Tensor, enc_lengths: Tensor, tokenizer: Tokenizer) -> Tensor:
    """enc (B, T, D), enc_lengths (B,): encoder output -> (B,) the id of each utterance's most likely
    language token (among tokenizer.language_ids)."""
    candidates = tokenizer.language_ids
    if not candidates:
        raise ValueError(f"{tokenizer!r} has no language tokens to detect a language with")
    decoder = model.decoder
    state = decoder.init_state(enc, enc_lengths)
    sos = torch.full((enc.size(0),), tokenizer.sos_id, dtype=torch.long, device=enc.device)
    logits, _ = decoder.step(sos, state)
    ids = torch.tensor(candidates, dtype=torch.long, device=enc.device)
    return ids[logits.index_select(1, ids).argmax(dim=1)]


def resolve_prefix(model: nn.Module, enc: Tensor, enc_lengths: Tensor, prefix: Sequence[int | None],
                   tokenizer: Tokenizer) -> Tensor:
    """The forced prefix of each utterance, (B, P): `prefix` (tokenizer.prefix_ids) with every None
    replaced by the language detected for that utterance."""
    fixed = [-1 if token is None else token for token in prefix]
    ids = torch.tensor(fixed, dtype=torch.long, device=enc.device).expand(enc.size(0), -1)
    if None not in prefix:
        return ids
    languages = detect_language(model, enc, enc_lengths, tokenizer)
    return torch.where(ids < 0, languages[:, None], ids)
