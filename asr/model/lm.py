"""A Transformer language model over the ASR tokenizer, for shallow fusion in beam search.

It trains with the speech Trainer: forward(batch) returns {"loss", "acc"} like ASRModel, on batches of
asr.data.TextDataset (Batch objects without audio, the text in `targets`). It decodes with the
decoder's incremental API (init_state / step / reorder_state), fed <sos> and then the hypothesis.
An LM directory, like a model directory, needs no unpickling:

    exp/<name>/lm/
        config.yaml     format_version, the LMConfig, the tokenizer's kind and size
        lm.pt           the state dict (tensors only; loaded with weights_only=True)
        tokenizer.json  the tokenizer it was trained with (load_lm checks it against the ASR model's)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from asr.fileio import load_tensors, save_tensors
from asr.model.attention import MultiHeadAttention
from asr.model.config import PAD_ID, _check, _check_transformer_dims, _check_types
from asr.model.io import CONFIG_FILE, load_weights, read_config_file, write_config_file
from asr.model.layers import FeedForward, lookup, residual
from asr.model.linear import Linear
from asr.model.loss import label_smoothed_nll, token_accuracy
from asr.model.model import decoder_io
from asr.model.positional import SinusoidalPositionalEncoding
from asr.text import Tokenizer, load_tokenizer
from asr.typed_config import from_dict

WEIGHTS_FILE = "lm.pt"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class LMConfig:
    """Language-model hyper-parameters. lsm_weight: label smoothing of the training loss."""

    vocab_size: int
    kind: str = "transformer"
    d_model: int = 256
    n_heads: int = 4
    n_layers: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    attn_dropout: float = 0.0
    normalize_before: bool = True
    tie_embeddings: bool = True
    lsm_weight: float = 0.0

    def __post_init__(self) -> None:
        _check_types(self)
        _check_transformer_dims(self)
        _check(self, self.vocab_size > PAD_ID, "vocab_size", f"expected > {PAD_ID} (the special tokens alone take 5)")
        _check(self, 0.0 <= self.lsm_weight < 1.0, "lsm_weight", "expected a value in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LMConfig:
        return from_dict(cls, values)


@dataclass(frozen=True)
class LMState:
    """Self-attention caches, one (N, H, t, Dh) tensor per layer, for the t tokens fed so far."""

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]

    @property
    def offset(self) -> int:
        return self.keys[0].size(2)


class LMLayer(nn.Module):
    """Causal self-attention then feed-forward, each a residual sub-layer (a decoder layer without
    cross-attention)."""

    def __init__(self, d_model: int, n_heads: int, ffn_dim: int, dropout: float, attn_dropout: float,
                 normalize_before: bool):
        super().__init__()
        self.normalize_before = normalize_before
        self.self_attn = MultiHeadAttention(d_model, n_heads, attn_dropout)
        self.ffn = FeedForward(d_model, ffn_dim, dropout)
        self.attn_norm = nn.LayerNorm(d_model)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, U, D) -> (B, U, D); position u sees positions <= u."""
        x = self._sublayer(x, self.attn_norm, lambda h: self.self_attn(h, is_causal=True))
        return self._sublayer(x, self.ffn_norm, self.ffn)

    def step(self, x: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (N, 1, D), caches (N, H, t, Dh) -> (x (N, 1, D), caches (N, H, t + 1, Dh))."""
        h = self.attn_norm(x) if self.normalize_before else x
        out, key, value = self.self_attn.step(h, key, value)
        x = x + self.dropout(out)
        if not self.normalize_before:
            x = self.attn_norm(x)
        return self._sublayer(x, self.ffn_norm, self.ffn), key, value

    def _sublayer(self, x: Tensor, norm: nn.LayerNorm, fn: Callable[[Tensor], Tensor]) -> Tensor:
        return residual(x, norm, fn, self.dropout, self.normalize_before)


class TransformerLM(nn.Module):
    """Token embedding + sinusoidal positions, N causal layers, projection to the vocabulary."""

    def __init__(self, config: LMConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        nn.init.normal_(self.embed.weight, std=config.d_model**-0.5)  # as the decoder's
        self.pos_enc = SinusoidalPositionalEncoding(config.d_model, config.dropout)
        self.layers = nn.ModuleList(
            LMLayer(config.d_model, config.n_heads, config.ffn_dim, config.dropout, config.attn_dropout,
                    config.normalize_before)
            for _ in range(config.n_layers)
        )
        self.final_norm = nn.LayerNorm(config.d_model) if config.normalize_before else nn.Identity()
        self.output = Linear(config.d_model, config.vocab_size)
        if config.tie_embeddings:
            self.output.weight = self.embed.weight

    def logits(self, tokens: Tensor) -> Tensor:
        """tokens (B, U) -> logits (B, U, V) of the token after each position."""
        x = self.pos_enc(self.embed(tokens))
        for layer in self.layers:
            x = layer(x)
        return self.output(self.final_norm(x))

    def forward(self, batch: Any) -> dict[str, Tensor]:
        """batch: an asr.data.Batch whose targets (B, N) padded with -1 hold the text, target_lengths (B,)
        their lengths, prefix (B, P) tokens given before them. -> {"loss", "acc"} per token (+ <eos>)."""
        ys_in, ys_out = decoder_io(batch.targets, batch.target_lengths, batch.prefix)
        logits = self.logits(ys_in)
        loss = label_smoothed_nll(logits, ys_out, self.config.lsm_weight)
        with torch.no_grad():
            acc = token_accuracy(logits, ys_out)
        return {"loss": loss, "acc": acc}

    @torch.no_grad()
    def sequence_logprob(self, targets: Tensor, target_lengths: Tensor) -> Tensor:
        """log p(y, <eos>) of each sequence: targets (B, N) padded with -1, target_lengths (B,) -> (B,)."""
        ys_in, ys_out = decoder_io(targets, target_lengths, targets.new_zeros(targets.size(0), 0))
        logp = self.logits(ys_in).float().log_softmax(dim=-1)
        valid = ys_out >= 0
        picked = logp.gather(2, ys_out.clamp(min=0).unsqueeze(2)).squeeze(2)
        return (picked * valid).sum(dim=1)

    def init_state(self, num_hyps: int, device: torch.device | str | None = None) -> LMState:
        """Empty caches for num_hyps hypotheses (feed <sos> first)."""
        first = self.layers[0].self_attn
        weight = self.embed.weight
        empty = torch.zeros(num_hyps, first.n_heads, 0, first.head_dim, dtype=weight.dtype,
                            device=device if device is not None else weight.device)
        return LMState((empty,) * len(self.layers), (empty,) * len(self.layers))

    def step(self, tokens: Tensor, state: LMState) -> tuple[Tensor, LMState]:
        """tokens (N,): the last token of each hypothesis -> (logits (N, V) of the next one, new state)."""
        x = self.pos_enc(self.embed(tokens.unsqueeze(1)), offset=state.offset)
        keys, values = [], []
        for layer, key, value in zip(self.layers, state.keys, state.values):
            x, key, value = layer.step(x, key, value)
            keys.append(key)
            values.append(value)
        return self.output(self.final_norm(x)).squeeze(1), LMState(tuple(keys), tuple(values))

    @staticmethod
    def reorder_state(state: LMState, index: Tensor) -> LMState:
        """Hypothesis i of the result is hypothesis index[i] of `state`; index (N',) long."""
        return LMState(tuple(k.index_select(0, index) for k in state.keys),
                       tuple(v.index_select(0, index) for v in state.values))


LMS: dict[str, type[TransformerLM]] = {"transformer": TransformerLM}


def build_lm(config: LMConfig) -> TransformerLM:
    """A freshly initialised language model for `config`."""
    return lookup(LMS, config.kind, "language model kind")(config)


def save_lm_dir(directory: str | os.PathLike, lm: TransformerLM, tokenizer: Tokenizer) -> Path:
    """Write an LM directory (see the module docstring)."""
    if lm.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"save_lm_dir: the LM has {lm.config.vocab_size} tokens, the tokenizer {tokenizer.vocab_size}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_tensors({k: v.detach().cpu() for k, v in lm.state_dict().items()}, directory / WEIGHTS_FILE)
    tokenizer.save(directory)
    config = {"format_version": FORMAT_VERSION, "lm": lm.config.to_dict(),
              "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size}}
    write_config_file(directory, config)
    return directory


def load_lm(directory: str | os.PathLike, device: str | torch.device = "cpu",
            tokenizer: Tokenizer | None = None) -> TransformerLM:
    """Load an LM directory in eval mode. tokenizer: the ASR model's, which must equal the LM's
    token for token (fusion adds scores of the same ids), else a ValueError says where they differ."""
    directory = Path(directory)
    config = read_config_file(directory, ("lm",), "language-model directory", max_version=FORMAT_VERSION)
    try:
        lm = build_lm(LMConfig.from_dict(config["lm"]))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{directory / CONFIG_FILE}: {error}") from None
    weights = directory / WEIGHTS_FILE
    load_weights(lm, load_tensors(weights), weights)
    if tokenizer is not None:
        check_same_tokenizer(load_tokenizer(directory), tokenizer, where=str(directory))
    return lm.to(device).eval()


def check_same_tokenizer(lm_tokenizer: Tokenizer, tokenizer: Tokenizer, where: str = "the LM") -> None:
    """ValueError unless both tokenizers map the same ids to the same tokens."""
    if lm_tokenizer.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"{where}: the LM's tokenizer has {lm_tokenizer.vocab_size} tokens, the model's "
                         f"{tokenizer.vocab_size}; an LM must be trained with the model's tokenizer")
    for i in range(tokenizer.vocab_size):
        if lm_tokenizer.id_to_token(i) != tokenizer.id_to_token(i):
            raise ValueError(f"{where}: token {i} is {lm_tokenizer.id_to_token(i)!r} for the LM but "
                             f"{tokenizer.id_to_token(i)!r} for the model; an LM must use the model's tokenizer")
