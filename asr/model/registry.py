"""Registries mapping config names to classes, and `build_model`.

A new encoder (e.g. a Conformer) or decoder (e.g. non-autoregressive) is added by registering its
class here under a new `kind`; the trainer and recipes only ever call build_model(config).
Encoders take (input_dim, EncoderConfig) and expose output_dim; decoders take
(vocab_size, enc_dim, DecoderConfig). MODELS gives the model class of a decoder kind, and so its
training loss (ASRModel: teacher-forced attention loss; NATModel, MaskCTCModel: their own losses).
"""

from __future__ import annotations

from torch import nn

from asr.model.config import ModelConfig
from asr.model.ctc import CTC
from asr.model.decoder import TransformerDecoder
from asr.model.encoder import TransformerEncoder
from asr.model.layers import lookup
from asr.model.maskctc import MaskCTCDecoder, MaskCTCModel
from asr.model.model import ASRModel
from asr.model.nat import NATDecoder, NATModel
from asr.model.positional import POSITIONAL
from asr.model.subsampling import SUBSAMPLING

ENCODERS: dict[str, type[nn.Module]] = {"transformer": TransformerEncoder}
DECODERS: dict[str, type[nn.Module]] = {"transformer": TransformerDecoder, "nat": NATDecoder,
                                        "maskctc": MaskCTCDecoder}
MODELS: dict[str, type[ASRModel]] = {"nat": NATModel, "maskctc": MaskCTCModel}  # default: ASRModel

__all__ = ["DECODERS", "ENCODERS", "MODELS", "POSITIONAL", "SUBSAMPLING", "build_model"]


def build_model(config: ModelConfig) -> ASRModel:
    """A freshly initialised model for `config` (CMVN statistics are identity until set)."""
    encoder = lookup(ENCODERS, config.encoder.kind, "encoder kind")(config.input_dim, config.encoder)
    decoder = None
    if config.has_decoder:
        decoder = lookup(DECODERS, config.decoder.kind, "decoder kind")(config.vocab_size, encoder.output_dim,
                                                                         config.decoder)
    ctc = CTC(encoder.output_dim, config.vocab_size) if config.has_ctc else None
    return MODELS.get(config.decoder.kind, ASRModel)(config, encoder, decoder, ctc)
