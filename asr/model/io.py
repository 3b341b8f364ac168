"""The model directory: everything decoding and transcription need, and nothing that needs unpickling.

    exp/<name>/model/
        config.yaml       model, feature and tokenizer settings (plain YAML)
        model.pt          the model's state dict (tensors only; loaded with weights_only=True)
        tokenizer.json    (+ tokenizer.model for SentencePiece)
        cmvn.json         the global CMVN statistics (also inside model.pt as the cmvn buffers)

`asr.load_model(directory)` returns a SpeechModel: the network, its tokenizer and its feature
extractor, ready to decode features or transcribe audio.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from torch import Tensor

from asr.features import CMVNStats, FeatureConfig, FeatureExtractor
from asr.fileio import atomic_write_text, load_tensors, save_tensors
from asr.model.config import ModelConfig
from asr.model.model import ASRModel
from asr.model.registry import build_model
from asr.text import Tokenizer, load_tokenizer

if TYPE_CHECKING:
    from asr.decode.options import DecodeOptions, DecodeResult

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.pt"
CMVN_FILE = "cmvn.json"
FORMAT_VERSION = 1


class SpeechModel:
    """A trained model with its tokenizer and features: `decode` features, or `transcribe` audio.

    lm: an optional language model for shallow fusion (DecodeOptions.lm_weight > 0).
    """

    def __init__(self, model: ASRModel, tokenizer: Tokenizer, feature_config: FeatureConfig,
                 directory: Path | None = None, lm: torch.nn.Module | None = None):
        if model.config.vocab_size != tokenizer.vocab_size:
            raise ValueError(f"model vocabulary ({model.config.vocab_size}) does not match the tokenizer's "
                             f"({tokenizer.vocab_size})")
        if model.config.input_dim != feature_config.n_mels:
            raise ValueError(f"model input_dim ({model.config.input_dim}) does not match the features' "
                             f"n_mels ({feature_config.n_mels})")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.feature_config = feature_config
        self.features = FeatureExtractor(feature_config)
        self.directory = directory
        self.lm = lm.eval() if lm is not None else None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def sample_rate(self) -> int:
        return self.feature_config.sample_rate

    def to(self, device: str | torch.device) -> SpeechModel:
        self.model.to(device)
        self.features.to(device)
        if self.lm is not None:
            self.lm.to(device)
        return self

    def decode(self, feats: Tensor, feat_lengths: Tensor, options: DecodeOptions | None = None) -> list[DecodeResult]:
        """feats (B, T, F) raw features, feat_lengths (B,) -> one DecodeResult per utterance."""
        from asr.decode import DecodeOptions, decode

        return decode(self.model, feats.to(self.device), feat_lengths.to(self.device), options or DecodeOptions(),
                      tokenizer=self.tokenizer, lm=self.lm)

    def transcribe(self, audio: Any, options: DecodeOptions | None = None, **option_changes: Any) -> Any:
        """Transcribe (or translate) audio: a path, an array, or a list of them.

        Keyword arguments override fields of `options` (e.g. beam_size=5, task="st", target_lang="de").
        Returns a DecodeResult for one input and a list of them for a list; long audio is split into
        segments, each with its timestamps.
        """
        from asr.decode import DecodeOptions
        from asr.transcribe import transcribe

        options = (options or DecodeOptions()).replace(**option_changes)
        if isinstance(audio, (list, tuple)):
            return transcribe(self, list(audio), options)
        return transcribe(self, [audio], options)[0]

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.model.parameters())
        return f"SpeechModel({self.directory or 'in memory'}, {params / 1e6:.1f}M params, {self.tokenizer!r})"


def save_model_dir(directory: str | os.PathLike, model: ASRModel, tokenizer: Tokenizer,
                   feature_config: FeatureConfig, cmvn: CMVNStats | None = None,
                   state_dict: dict[str, Tensor] | None = None) -> Path:
    """Write a model directory. state_dict: weights to store instead of the model's own (e.g. averaged)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "format_version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "features": feature_config.to_dict(),
        "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size,
                      "extra_tokens": list(tokenizer.extra_tokens)},
    }
    weights = state_dict if state_dict is not None else model.state_dict()
    save_tensors({k: v.detach().cpu() for k, v in weights.items()}, directory / WEIGHTS_FILE)
    tokenizer.save(directory)
    if cmvn is not None:
        cmvn.save(directory / CMVN_FILE)
    atomic_write_text(directory / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return directory


def read_model_config(directory: str | os.PathLike) -> tuple[ModelConfig, FeatureConfig]:
    """The model and feature configs of a model directory, with errors that name the file."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; is {directory} a model directory "
                                f"(written by the recipes' train/average stage)?")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(config, dict) or "model" not in config or "features" not in config:
        raise ValueError(f"{path}: expected a mapping with 'model' and 'features' sections")
    version = config.get("format_version", FORMAT_VERSION)
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {version} is newer than this asr supports ({FORMAT_VERSION})")
    try:
        return ModelConfig.from_dict(config["model"]), FeatureConfig.from_dict(config["features"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None


def load_model(directory: str | os.PathLike, device: str | torch.device = "cpu",
               weights: str | os.PathLike | None = None) -> SpeechModel:
    """Load a model directory (see the module docstring) onto `device`, in eval mode.

    weights: another state-dict file to load instead of model.pt (e.g. an averaged checkpoint).
    """
    directory = Path(directory)
    model_config, feature_config = read_model_config(directory)
    model = build_model(model_config)
    state = load_tensors(weights or directory / WEIGHTS_FILE)
    if isinstance(state.get("model"), dict):  # a trainer checkpoint holds the weights under "model"
        state = state["model"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights or directory / WEIGHTS_FILE}: weights do not match {CONFIG_FILE}: "
                         f"missing {_preview(missing)}, unexpected {_preview(unexpected)}")
    return SpeechModel(model, load_tokenizer(directory), feature_config, directory).to(device)


def _preview(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return f"[{shown}{', …' if len(names) > limit else ''}] ({len(names)})"
