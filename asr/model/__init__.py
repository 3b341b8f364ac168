"""Attention encoder-decoder ASR/ST model with joint CTC. Build one with build_model(ModelConfig(...)).

The Transformer language model for shallow fusion: build_lm(LMConfig(vocab_size=...)), save_lm_dir / load_lm.
"""

from asr.model.attention import MultiHeadAttention
from asr.model.config import (
    BLANK_ID,
    EOS_ID,
    IGNORE_ID,
    PAD_ID,
    SOS_ID,
    DecoderConfig,
    EncoderConfig,
    ModelConfig,
    NATConfig,
)
from asr.model.ctc import CTC
from asr.model.decoder import DecoderState, TransformerDecoder
from asr.model.encoder import TransformerEncoder
from asr.model.lm import LMConfig, TransformerLM, build_lm, load_lm, save_lm_dir
from asr.model.loss import label_smoothed_nll, token_accuracy
from asr.model.maskctc import MaskCTCDecoder, MaskCTCModel
from asr.model.model import ASRModel, decoder_io
from asr.model.nat import NATDecoder, NATModel, NonAutoregressiveModel
from asr.model.positional import POSITIONAL, SinusoidalPositionalEncoding
from asr.model.registry import DECODERS, ENCODERS, MODELS, build_model
from asr.model.subsampling import SUBSAMPLING, Conv2dSubsampling

__all__ = [
    "ASRModel", "BLANK_ID", "CTC", "Conv2dSubsampling", "DECODERS", "DecoderConfig", "DecoderState", "ENCODERS",
    "EOS_ID", "EncoderConfig", "IGNORE_ID", "LMConfig", "ModelConfig", "MultiHeadAttention", "PAD_ID", "POSITIONAL",
    "SOS_ID", "SUBSAMPLING", "SinusoidalPositionalEncoding", "TransformerDecoder", "TransformerEncoder",
    "TransformerLM", "build_lm", "build_model", "decoder_io", "label_smoothed_nll", "load_lm", "save_lm_dir",
    "token_accuracy",
    "MODELS", "MaskCTCDecoder", "MaskCTCModel", "NATConfig", "NATDecoder", "NATModel", "NonAutoregressiveModel",
]
