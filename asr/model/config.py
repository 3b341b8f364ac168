"""Model configuration: frozen dataclasses with strict dict round-trips.

A model directory stores `ModelConfig.to_dict()` as JSON and rebuilds the model with
`build_model(ModelConfig.from_dict(d))`. `from_dict` rejects unknown keys and wrong types
with an error naming the field, so a typo in a recipe config fails at once instead of
silently training the default model.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from asr.features import SpecAugmentConfig
from asr.text.tokenizer import BLANK_ID, EOS_ID, IGNORE_ID, PAD_ID, SOS_ID  # fixed in every tokenizer
from asr.typed_config import from_dict

__all__ = ["BLANK_ID", "EOS_ID", "IGNORE_ID", "PAD_ID", "SOS_ID", "DecoderConfig", "EncoderConfig", "ModelConfig",
           "NATConfig"]

T = TypeVar("T")


@dataclass(frozen=True)
class EncoderConfig:
    """Encoder hyper-parameters. subsampling_channels=0 means "d_model channels" (as in WeNet).

    Options that imported models need (asr/pretrained; the defaults are this toolkit's own model):
    subsampling "conv1d2" (Whisper) / "conv1d4_glu" (fairseq S2T) besides "conv2d2/4/6/8";
    pos_enc "sinusoidal" | "whisper" | "fairseq" | "learned" (a table of max_positions rows);
    scale_embedding: multiply the subsampled input by sqrt(d_model) before adding positions;
    key_bias: a bias on the attention key projections (Whisper has none).
    """

    kind: str = "transformer"
    d_model: int = 256
    n_heads: int = 4
    n_layers: int = 12
    ffn_dim: int = 1024
    dropout: float = 0.1
    attn_dropout: float = 0.0
    subsampling: str = "conv2d4"
    subsampling_channels: int = 0
    normalize_before: bool = True
    pos_enc: str = "sinusoidal"
    activation: str = "relu"
    scale_embedding: bool = True
    max_positions: int = 0
    key_bias: bool = True

    def __post_init__(self) -> None:
        _check_types(self)
        _check_transformer_dims(self)
        _check(self, self.subsampling_channels >= 0, "subsampling_channels", "expected >= 0 (0 = d_model)")
        _check_positions(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EncoderConfig:
        return from_dict(cls, values)


@dataclass(frozen=True)
class NATConfig:
    """The non-autoregressive decoder's own settings (DecoderConfig.kind = "nat", asr/model/nat.py).

    max_len: the most tokens it emits: length classes 0..max_len, or max_len query positions.
    length_mode: "predict": a length predictor picks L, then L query positions are decoded at once;
        "eos": max_len query positions are always decoded and the output is cut at the first <eos>
        (no length predictor).
    length_weight: weight of the length predictor's cross-entropy, added to the token loss.
    """

    max_len: int = 128
    length_mode: str = "predict"
    length_weight: float = 0.1

    def __post_init__(self) -> None:
        _check_types(self)
        _check(self, self.max_len >= 1, "max_len", "expected >= 1")
        _check(self, self.length_mode in ("predict", "eos"), "length_mode", "expected 'predict' or 'eos'")
        _check(self, self.length_weight >= 0.0, "length_weight", "expected >= 0")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> NATConfig:
        return from_dict(cls, values)


@dataclass(frozen=True)
class DecoderConfig:
    """Decoder hyper-parameters. tie_embeddings shares the output projection with the token embedding.

    kind: "transformer" (autoregressive), "nat" (non-autoregressive, one pass) or "maskctc" (a
    conditional masked LM that refines CTC output); see asr/model/registry.py. nat: settings of
    kind "nat" (None: NATConfig() defaults).
    """

    kind: str = "transformer"
    d_model: int = 256
    n_heads: int = 4
    n_layers: int = 6
    ffn_dim: int = 1024
    dropout: float = 0.1
    attn_dropout: float = 0.0
    normalize_before: bool = True
    tie_embeddings: bool = True
    nat: NATConfig | None = None
    # Options that imported models need (see EncoderConfig); output_bias: a bias on the output projection.
    activation: str = "relu"
    pos_enc: str = "sinusoidal"
    scale_embedding: bool = True
    max_positions: int = 0
    key_bias: bool = True
    output_bias: bool = True

    def __post_init__(self) -> None:
        _check_types(self)
        _check_transformer_dims(self)
        _check_positions(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DecoderConfig:
        return from_dict(cls, values)


@dataclass(frozen=True)
class ModelConfig:
    """The whole model. loss = ctc_weight * ctc + (1 - ctc_weight) * attention.

    ctc_weight=1.0 builds no decoder (CTC-only model); ctc_weight=0.0 builds no CTC head.
    lsm_weight: label smoothing of the attention loss. sampling_prob: scheduled-sampling
    probability (the trainer ramps it with ASRModel.set_sampling_prob). specaug=None: no SpecAugment.
    length_normalized_loss: True averages the attention loss over target tokens; False sums it per
    utterance and averages over the batch, as the CTC loss always is (ESPnet's and WeNet's default),
    so that ctc_weight balances two losses on the same scale.
    """

    vocab_size: int
    input_dim: int = 80
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    ctc_weight: float = 0.3
    lsm_weight: float = 0.1
    sampling_prob: float = 0.0
    length_normalized_loss: bool = True
    specaug: SpecAugmentConfig | None = field(default_factory=SpecAugmentConfig)

    def __post_init__(self) -> None:
        _check_types(self)
        _check(self, self.vocab_size > PAD_ID, "vocab_size", f"expected > {PAD_ID} (the special tokens alone take 5)")
        _check(self, self.input_dim > 0, "input_dim", "expected > 0")
        _check(self, 0.0 <= self.ctc_weight <= 1.0, "ctc_weight", "expected a value in [0, 1]")
        _check(self, 0.0 <= self.lsm_weight < 1.0, "lsm_weight", "expected a value in [0, 1)")
        _check(self, 0.0 <= self.sampling_prob <= 1.0, "sampling_prob", "expected a probability in [0, 1]")

    @property
    def has_decoder(self) -> bool:
        return self.ctc_weight < 1.0

    @property
    def has_ctc(self) -> bool:
        return self.ctc_weight > 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        return from_dict(cls, values)


def _check(config: Any, ok: bool, name: str, what: str) -> None:
    if not ok:
        raise ValueError(f"{type(config).__name__}.{name}: {what}, got {getattr(config, name)!r}")


def _check_transformer_dims(config: EncoderConfig | DecoderConfig) -> None:
    for name in ("d_model", "n_heads", "n_layers", "ffn_dim"):
        _check(config, getattr(config, name) > 0, name, "expected > 0")
    _check(config, config.d_model % config.n_heads == 0, "d_model",
           f"expected a multiple of n_heads={config.n_heads}")
    for name in ("dropout", "attn_dropout"):
        _check(config, 0.0 <= getattr(config, name) < 1.0, name, "expected a value in [0, 1)")


def _check_positions(config: EncoderConfig | DecoderConfig) -> None:
    _check(config, config.max_positions >= 0, "max_positions", "expected >= 0 (0 = unlimited)")
    _check(config, config.pos_enc != "learned" or config.max_positions > 0, "max_positions",
           "expected > 0 with pos_enc='learned' (the size of the learned table)")


def _check_types(config: Any) -> None:
    """Field values must match their annotations (ints are accepted for floats, bools never for numbers)."""
    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        expected = hints[f.name]
        is_union = typing.get_origin(expected) in (typing.Union, types.UnionType)
        allowed = typing.get_args(expected) if is_union else (expected,)
        value = getattr(config, f.name)
        if not any(_matches(value, t) for t in allowed):
            names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
            raise ValueError(f"{type(config).__name__}.{f.name}: expected {names}, got {value!r}")


def _matches(value: Any, expected: type) -> bool:
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, (int, float))
    return isinstance(value, expected)
