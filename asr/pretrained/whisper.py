"""Whisper checkpoints (openai-whisper .pt files and transformers WhisperForConditionalGeneration
directories) as model directories of ours.

Whisper is our encoder-decoder with these options: Whisper log-mel features (30 s windows); a
Conv1d + GELU front-end ("conv1d2"); openai-whisper's sinusoids in the encoder ("whisper") and a
learned table in the decoder ("learned", n_text_ctx rows), both added unscaled; pre-LN blocks with
GELU feed-forward layers (4 x d_model), no key bias, a final LayerNorm; the output projection tied to
the token embedding, without bias; no CTC head. The tokenizer is asr.text.whisper.WhisperTokenizer.

The vocabulary (a .tiktoken file, or transformers' tokenizer.json / vocab.json) comes from the
checkpoint's directory, a file given with `vocab=`, or the installed openai-whisper package; never
from the network.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from asr.features import FeatureConfig
from asr.fileio import load_tensors
from asr.model.config import DecoderConfig, EncoderConfig, ModelConfig
from asr.model.io import save_model_dir
from asr.model.positional import sin_cos_table
from asr.model.registry import build_model
from asr.pretrained.checkpoints import bart_style_rules, load_into, read_hf_dir, rename
from asr.text.whisper import WhisperTokenizer, read_tiktoken, tokens_from_vocab_json

ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "silu": "swish", "swish": "swish"}
DIMENSIONS = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer", "n_vocab", "n_text_ctx",
              "n_text_state", "n_text_head", "n_text_layer")

# openai-whisper parameter names -> ours (the positional tables are handled apart).
OPENAI_RULES: list[tuple[str, str | None]] = [
    (r"encoder\.conv1\.(weight|bias)", r"encoder.subsampling.conv.0.\1"),
    (r"encoder\.conv2\.(weight|bias)", r"encoder.subsampling.conv.1.\1"),
    (r"encoder\.blocks\.(\d+)\.attn\.(query|key|value|out)\.(weight|bias)", r"encoder.layers.\1.self_attn.\2.\3"),
    (r"encoder\.blocks\.(\d+)\.attn_ln\.(weight|bias)", r"encoder.layers.\1.attn_norm.\2"),
    (r"decoder\.blocks\.(\d+)\.attn\.(query|key|value|out)\.(weight|bias)", r"decoder.layers.\1.self_attn.\2.\3"),
    (r"decoder\.blocks\.(\d+)\.attn_ln\.(weight|bias)", r"decoder.layers.\1.self_norm.\2"),
    (r"decoder\.blocks\.(\d+)\.cross_attn\.(query|key|value|out)\.(weight|bias)",
     r"decoder.layers.\1.cross_attn.\2.\3"),
    (r"decoder\.blocks\.(\d+)\.cross_attn_ln\.(weight|bias)", r"decoder.layers.\1.cross_norm.\2"),
    (r"(encoder|decoder)\.blocks\.(\d+)\.mlp\.0\.(weight|bias)", r"\1.layers.\2.ffn.net.0.\3"),
    (r"(encoder|decoder)\.blocks\.(\d+)\.mlp\.2\.(weight|bias)", r"\1.layers.\2.ffn.net.3.\3"),
    (r"(encoder|decoder)\.blocks\.(\d+)\.mlp_ln\.(weight|bias)", r"\1.layers.\2.ffn_norm.\3"),
    (r"encoder\.ln_post\.(weight|bias)", r"encoder.final_norm.\1"),
    (r"decoder\.ln\.(weight|bias)", r"decoder.final_norm.\1"),
    (r"decoder\.token_embedding\.weight", "decoder.embed.weight"),
    (r"decoder\.positional_embedding", "decoder.pos_enc.table"),
    (r"encoder\.positional_embedding", "encoder.pos_enc.table"),
]
HF_RULES: list[tuple[str, str | None]] = [
    (r"model\.encoder\.conv1\.(weight|bias)", r"encoder.subsampling.conv.0.\1"),
    (r"model\.encoder\.conv2\.(weight|bias)", r"encoder.subsampling.conv.1.\1"),
    (r"model\.(encoder|decoder)\.embed_positions\.weight", r"\1.pos_enc.table"),
    (r"proj_out\.weight", "decoder.output.weight"),
    *bart_style_rules(),
]


def whisper_model_config(dims: Mapping[str, int], encoder_positions: str = "whisper",
                         activation: str = "gelu", ffn_dims: tuple[int, int] | None = None,
                         tied: bool = True) -> ModelConfig:
    """Our ModelConfig for openai-whisper's ModelDimensions (as a dict). encoder_positions: "whisper"
    (the formula) or "learned" (a stored table that differs from it, e.g. rounded to fp16)."""
    encoder = EncoderConfig(
        d_model=dims["n_audio_state"], n_heads=dims["n_audio_head"], n_layers=dims["n_audio_layer"],
        ffn_dim=ffn_dims[0] if ffn_dims else 4 * dims["n_audio_state"], dropout=0.0, subsampling="conv1d2",
        pos_enc=encoder_positions, activation=activation, scale_embedding=False,
        max_positions=dims["n_audio_ctx"] if encoder_positions == "learned" else 0, key_bias=False)
    decoder = DecoderConfig(
        d_model=dims["n_text_state"], n_heads=dims["n_text_head"], n_layers=dims["n_text_layer"],
        ffn_dim=ffn_dims[1] if ffn_dims else 4 * dims["n_text_state"], dropout=0.0, tie_embeddings=tied,
        activation=activation, pos_enc="learned", scale_embedding=False, max_positions=dims["n_text_ctx"],
        key_bias=False, output_bias=False)
    return ModelConfig(vocab_size=dims["n_vocab"], input_dim=dims["n_mels"], encoder=encoder, decoder=decoder,
                       ctc_weight=0.0, specaug=None)


def whisper_features(n_mels: int) -> FeatureConfig:
    return FeatureConfig(kind="whisper", sample_rate=16000, n_mels=n_mels, win_ms=25.0, hop_ms=10.0, n_fft=400)


def import_whisper(checkpoint: str | os.PathLike, out_dir: str | os.PathLike,
                   vocab: str | os.PathLike | None = None) -> Path:
    """Convert an openai-whisper checkpoint (a dict with "dims" and "model_state_dict", as
    whisper.load_model reads) into the model directory `out_dir`; returns out_dir."""
    checkpoint = Path(checkpoint)
    data = load_tensors(checkpoint)
    dims, state = data.get("dims"), data.get("model_state_dict")
    if not isinstance(dims, dict) or not isinstance(state, dict):
        raise ValueError(f"{checkpoint}: not an openai-whisper checkpoint (expected 'dims' and 'model_state_dict')")
    missing = [name for name in DIMENSIONS if not isinstance(dims.get(name), int)]
    if missing:
        raise ValueError(f"{checkpoint}: 'dims' lacks integer {', '.join(missing)}")
    state = rename(state, OPENAI_RULES, str(checkpoint))
    tokenizer = whisper_tokenizer(dims["n_vocab"], [checkpoint.parent], vocab, str(checkpoint))
    return _save(out_dir, dims, state, tokenizer, {}, str(checkpoint))


def import_hf_whisper(directory: str | os.PathLike, out_dir: str | os.PathLike,
                      vocab: str | os.PathLike | None = None) -> Path:
    """Convert a transformers WhisperForConditionalGeneration directory into the model directory `out_dir`."""
    directory = Path(directory)
    config, state = read_hf_dir(directory)
    source = str(directory)
    try:
        dims = {"n_mels": config["num_mel_bins"], "n_audio_ctx": config["max_source_positions"],
                "n_audio_state": config["d_model"], "n_audio_head": config["encoder_attention_heads"],
                "n_audio_layer": config["encoder_layers"], "n_vocab": config["vocab_size"],
                "n_text_ctx": config["max_target_positions"], "n_text_state": config["d_model"],
                "n_text_head": config["decoder_attention_heads"], "n_text_layer": config["decoder_layers"]}
        ffn_dims = (config["encoder_ffn_dim"], config["decoder_ffn_dim"])
        activation = config.get("activation_function", "gelu")
    except KeyError as error:
        raise ValueError(f"{directory / 'config.json'}: missing {error}") from None
    if activation not in ACTIVATIONS:
        raise ValueError(f"{directory / 'config.json'}: activation_function {activation!r} is not supported "
                         f"(supported: {', '.join(ACTIVATIONS)})")
    state = rename(state, HF_RULES, source)
    tied = config.get("tie_word_embeddings", True)
    if tied:
        state.pop("decoder.output.weight", None)  # the same tensor as the embedding
    tokenizer = whisper_tokenizer(dims["n_vocab"], [directory], vocab, source)
    options = {"activation": ACTIVATIONS[activation], "ffn_dims": ffn_dims, "tied": tied}
    return _save(out_dir, dims, state, tokenizer, options, source)


def _save(out_dir: str | os.PathLike, dims: Mapping[str, int], state: dict[str, Tensor],
          tokenizer: WhisperTokenizer, options: dict[str, Any], source: str) -> Path:
    stored = state.pop("encoder.pos_enc.table", None)
    formula = sin_cos_table(dims["n_audio_ctx"], dims["n_audio_state"])
    # The formula when the checkpoint holds exactly it; else the stored table (fp16 checkpoints hold it
    # rounded, and the reference then computes with the rounded values).
    exact = stored is None or (stored.shape == formula.shape and torch.allclose(stored.float(), formula, atol=1e-6))
    config = whisper_model_config(dims, "whisper" if exact else "learned", **options)
    if not exact:
        state["encoder.pos_enc.table"] = stored
    model = build_model(config)
    if config.decoder.tie_embeddings and "decoder.embed.weight" in state:
        state["decoder.output.weight"] = state["decoder.embed.weight"]
    state["cmvn.mean"], state["cmvn.istd"] = model.cmvn.mean, model.cmvn.istd  # identity: Whisper has none
    load_into(model, state, source)
    if tokenizer.vocab_size != config.vocab_size:
        raise ValueError(f"{source}: the model has {config.vocab_size} outputs, its tokenizer {tokenizer.vocab_size}")
    return save_model_dir(out_dir, model, tokenizer, whisper_features(dims["n_mels"]))


def whisper_tokenizer(vocab_size: int, directories: list[Path], vocab: str | os.PathLike | None,
                      source: str) -> WhisperTokenizer:
    """The tokenizer of a Whisper model with `vocab_size` outputs, from the first vocabulary found:
    `vocab` (a .tiktoken, tokenizer.json or vocab.json file), then in `directories` a .tiktoken
    file, tokenizer.json or vocab.json, then the installed openai-whisper package's assets."""
    name = "multilingual.tiktoken" if vocab_size >= 51865 else "gpt2.tiktoken"
    candidates = [Path(vocab)] if vocab is not None else []
    for directory in directories:
        candidates += [directory / name, directory / "tokenizer.json", directory / "vocab.json"]
    spec = importlib.util.find_spec("whisper")
    if spec is not None and spec.origin is not None:
        candidates.append(Path(spec.origin).parent / "assets" / name)
    for path in candidates:
        if path.is_file():
            return _tokenizer_from_file(path, vocab_size, name)
        if vocab is not None and path == Path(vocab):
            raise FileNotFoundError(f"{vocab}: no such vocabulary file")
    searched = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(f"{source}: no Whisper vocabulary found (looked for {searched}); pass the "
                            f"{name} file of openai-whisper (vocab=... / --vocab), or install openai-whisper")


def _tokenizer_from_file(path: Path, vocab_size: int, name: str) -> WhisperTokenizer:
    if path.suffix != ".json":
        return WhisperTokenizer.for_vocab_size(read_tiktoken(path), vocab_size, name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    vocab = data.get("model", {}).get("vocab") if "model" in data else data
    if not isinstance(vocab, dict):
        raise ValueError(f"{path}: no BPE vocabulary in it")
    added = {t["content"]: t["id"] for t in data.get("added_tokens", []) if isinstance(t, dict)}
    eot = added.get("<|endoftext|>", vocab.get("<|endoftext|>"))
    if not isinstance(eot, int):
        raise ValueError(f"{path}: no <|endoftext|> token")
    # The ordinary BPE tokens are the ids below <|endoftext|>.
    tokenizer = WhisperTokenizer.for_vocab_size(tokens_from_vocab_json(vocab, eot, str(path)), vocab_size, name)
    wrong = [f"{token}={added[token]} (expected {index})" for token, index in tokenizer.specials.items()
             if token in added and added[token] != index]
    if wrong:
        raise ValueError(f"{path}: special tokens are not at Whisper's ids: {', '.join(wrong[:5])}")
    return tokenizer
