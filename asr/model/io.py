"""The model directory: everything decoding and transcription need, and nothing that needs unpickling.

    exp/<name>/model/
        config.yaml       model, feature and tokenizer settings (plain YAML)
        model.pt          the model's state dict (tensors only; loaded with weights_only=True)
        tokenizer.json    (+ tokenizer.model for SentencePiece)
        cmvn.json         the global CMVN statistics (also inside model.pt as the cmvn buffers)

`asr.load_model(directory)` returns a SpeechModel: the network, its tokenizer and its feature
extractor (and optionally a language model for shallow fusion), ready to decode features or
transcribe audio.

Translation decodes without CTC: the CTC head is trained on source-language transcripts, so it
cannot score a translation. SpeechModel.decode/transcribe and the recipes therefore read the
default ctc_weight (DecodeOptions().ctc_weight, 0.3) as "the task's default", which is 0 for
task="st" (see `apply_task_defaults`); any other ctc_weight > 0 with task="st" is an error.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from asr.decode.options import DecodeOptions, DecodeResult
from asr.features import CMVNStats, FeatureConfig, FeatureExtractor
from asr.fileio import atomic_write_text, load_tensors, save_tensors
from asr.model.config import ModelConfig
from asr.model.model import ASRModel
from asr.model.registry import build_model
from asr.text import Tokenizer, load_tokenizer

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.pt"
CMVN_FILE = "cmvn.json"
FORMAT_VERSION = 1
DEFAULT_CTC_WEIGHT = next(f.default for f in dataclasses.fields(DecodeOptions) if f.name == "ctc_weight")
# The dtypes a model can compute in (SpeechModel.to / load_model(dtype=...)). bfloat16 is the fast one on
# CPUs with AVX512-BF16/AMX, float16 on GPUs; float32 is exact (the one the import parity is proven in).
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """"float32" / "bfloat16" / "float16" (or the torch dtype itself) -> the torch dtype."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")


class SpeechModel:
    """A trained model with its tokenizer and features: `decode` features, or `transcribe` audio.

    lm: an optional language model for shallow fusion (DecodeOptions.lm_weight > 0), trained with
    this model's tokenizer (asr.model.lm; load_model(..., lm=directory) loads and checks one).
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
    def dtype(self) -> torch.dtype:
        """The dtype the network computes in (its weights'; see `to`)."""
        return self.model.dtype

    @property
    def sample_rate(self) -> int:
        return self.feature_config.sample_rate

    def to(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> SpeechModel:
        """Move to `device` and/or compute in `dtype` ("float32", "bfloat16", "float16"; see DTYPES).

        A lower precision casts the weights of the network (and of the fusion LM). The features and
        the CMVN statistics stay float32 and are cast at the encoder's input; the search adds its
        scores in float32 (each scorer log-softmaxes in float32).
        """
        for module in (self.model, self.lm, self.features):
            if module is not None:
                module.to(device)
        if dtype is not None:
            dtype = resolve_dtype(dtype)
            _warn_if_slow(dtype, self.device)
            # Everything but the CMVN statistics (a mean of -5 would be off by 0.02 in bfloat16).
            for module in [m for m in self.model.children() if m is not self.model.cmvn] + [self.lm]:
                if module is not None:
                    module.to(dtype)
        return self

    def decode(self, feats: Tensor, feat_lengths: Tensor, options: DecodeOptions | None = None) -> list[DecodeResult]:
        """feats (B, T, F) raw features, feat_lengths (B,) -> one DecodeResult per utterance.

        options go through `apply_task_defaults` (task="st" with the default ctc_weight decodes without CTC);
        a model without a CTC head (e.g. an imported Whisper) also reads the default ctc_weight as 0.
        """
        from asr.decode import decode

        options = apply_task_defaults(options or DecodeOptions())
        if self.model.ctc is None and options.ctc_weight == DEFAULT_CTC_WEIGHT:  # e.g. imported Whisper
            options = options.replace(ctc_weight=0.0)
        return decode(self.model, feats.to(self.device), feat_lengths.to(self.device), options,
                      tokenizer=self.tokenizer, lm=self.lm)

    def transcribe(self, audio: Any, options: DecodeOptions | None = None, **option_changes: Any) -> Any:
        """Transcribe (or translate) audio: a path, an array, or a list of them.

        Keyword arguments override fields of `options` (e.g. beam_size=5, task="st", target_lang="de");
        task="st" with the default ctc_weight translates without CTC (see `apply_task_defaults`).
        Returns a DecodeResult for one input and a list of them for a list; long audio is split into
        segments, each with its timestamps.
        """
        from asr.transcribe import transcribe

        options = (options or DecodeOptions()).replace(**option_changes)
        if isinstance(audio, (list, tuple)):
            return transcribe(self, list(audio), options)
        return transcribe(self, [audio], options)[0]

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.model.parameters())
        return f"SpeechModel({self.directory or 'in memory'}, {params / 1e6:.1f}M params, {self.tokenizer!r})"


def _warn_if_slow(dtype: torch.dtype, device: torch.device) -> None:
    """Lower precision only pays where the hardware computes in it (measured on an AMX Xeon, 2 threads,
    Whisper-tiny beam 5: bfloat16 0.7x the float32 time, float16 1.0x)."""
    if device.type != "cpu" or dtype == torch.float32:
        return

    def supported(*probes: str) -> bool:  # torch.cpu's feature probes (private: absent means unknown, no)
        return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)

    if dtype == torch.float16 and not supported("_is_amx_fp16_supported"):
        warnings.warn("dtype float16 on a CPU without AMX-FP16 is no faster than float32 (bfloat16 is the CPU "
                      "choice)", stacklevel=3)
    elif dtype == torch.bfloat16 and not supported("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        warnings.warn("dtype bfloat16: this CPU has no bfloat16 instructions (AVX512-BF16, AMX), so it is "
                      "emulated and slower than float32", stacklevel=3)


def apply_task_defaults(options: DecodeOptions) -> DecodeOptions:
    """The options a task decodes with: for task="st", the default ctc_weight becomes 0.

    The CTC head models the source transcript, not the translation, so translation decodes without
    it. Only the default value (DecodeOptions().ctc_weight, 0.3) is replaced; any other ctc_weight
    is kept as chosen, and the search rejects one > 0 with task="st" (an error that says why).
    """
    if options.task == "st" and options.ctc_weight == DEFAULT_CTC_WEIGHT:
        return options.replace(ctc_weight=0.0)
    return options


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
    write_config_file(directory, config)
    return directory


def write_config_file(directory: Path, config: dict[str, Any]) -> None:
    """Write a model or language-model directory's config.yaml (plain YAML, atomically)."""
    atomic_write_text(directory / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))


def read_config_file(directory: str | os.PathLike, sections: Sequence[str], kind: str,
                     max_version: int = FORMAT_VERSION) -> dict[str, Any]:
    """The config.yaml of a model or language-model directory, as a dict with the mapping `sections`.

    kind names what the directory should be, for the error when the file is missing. Errors name the file.
    """
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; is {directory} a {kind}?")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(config, dict) or not all(isinstance(config.get(s), dict) for s in sections):
        names = " and ".join(repr(s) for s in sections)
        wanted = f"an {names} section" if len(sections) == 1 else f"{names} sections"
        raise ValueError(f"{path}: expected a mapping with {wanted}")
    version = config.get("format_version", max_version)
    if not isinstance(version, int):
        raise ValueError(f"{path}: format_version {version!r}: expected an integer")
    if version > max_version:
        raise ValueError(f"{path}: format_version {version} is newer than this asr supports ({max_version})")
    return config


def read_model_config(directory: str | os.PathLike) -> tuple[ModelConfig, FeatureConfig]:
    """The model and feature configs of a model directory, with errors that name the file."""
    config = read_config_file(directory, ("model", "features"),
                              "model directory (written by the recipes' train/average stage)")
    try:
        return ModelConfig.from_dict(config["model"]), FeatureConfig.from_dict(config["features"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{Path(directory) / CONFIG_FILE}: {error}") from None


def load_model(directory: str | os.PathLike, device: str | torch.device = "cpu",
               weights: str | os.PathLike | None = None, lm: str | os.PathLike | None = None,
               dtype: str | torch.dtype = "float32") -> SpeechModel:
    """Load a model directory (see the module docstring) onto `device`, in eval mode.

    dtype: what the network computes in (SpeechModel.to): "float32", or "bfloat16" for speed on
    CPUs with bfloat16 matrix units (AMX, AVX512-BF16; bench/whisper_compare.py), "float16" on GPUs.

    weights: another state-dict file to load instead of model.pt (e.g. an averaged checkpoint).
    lm: a language-model directory (asr.model.lm.save_lm_dir, e.g. exp/<name>/lm/model written by the
    recipes' lm stage) for shallow fusion; it must have been trained with this model's tokenizer.
    """
    from asr.model.lm import load_lm

    directory = Path(directory)
    model_config, feature_config = read_model_config(directory)
    model = build_model(model_config)
    path = Path(weights) if weights is not None else directory / WEIGHTS_FILE
    state = load_tensors(path)
    if isinstance(state.get("model"), dict):  # a trainer checkpoint holds the weights under "model"
        state = state["model"]
    load_weights(model, state, path)
    tokenizer = load_tokenizer(directory)
    fusion = load_lm(lm, tokenizer=tokenizer) if lm is not None else None
    return SpeechModel(model, tokenizer, feature_config, directory, lm=fusion).to(device, dtype)


def load_weights(module: torch.nn.Module, state: Mapping[str, Any], path: str | os.PathLike) -> None:
    """module.load_state_dict(state), or a ValueError naming `path` (the weights file) and every
    parameter that is missing, unexpected or of the wrong shape for the module built from config.yaml."""
    expected = module.state_dict()
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected]
    wrong_shape = [f"{name} {_shape(value)} (config.yaml: {tuple(expected[name].shape)})"
                   for name, value in state.items()
                   if name in expected and _shape(value) != tuple(expected[name].shape)]
    problems = [f"{what} {_preview(names)}" for what, names in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)) if names]
    if problems:
        raise ValueError(f"{path}: weights do not match {CONFIG_FILE}: {'; '.join(problems)}")
    module.load_state_dict(state)


def _shape(value: Any) -> tuple[int, ...] | str:
    return tuple(value.shape) if isinstance(value, Tensor) else f"<{type(value).__name__}, not a tensor>"


def _preview(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return f"[{shown}{', …' if len(names) > limit else ''}] ({len(names)})"
