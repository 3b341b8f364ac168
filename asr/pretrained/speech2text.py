"""fairseq Speech2Text checkpoints (transformers Speech2TextForConditionalGeneration directories) as model
directories of ours.

S2T is our encoder-decoder with these options: Kaldi fbank features with utterance CMVN; two
kernel-5 stride-2 Conv1d + GLU layers ("conv1d4_glu"); fairseq's sinusoidal positions after
multiplying the input by sqrt(d_model) (scale_embedding, in encoder and decoder); pre-LN blocks with
a final LayerNorm; an output projection without bias, tied to the embedding; no CTC head. The
tokenizer (asr.text.speech2text) reads the directory's sentencepiece.bpe.model and vocab.json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from asr.features import FeatureConfig
from asr.model.config import DecoderConfig, EncoderConfig, ModelConfig
from asr.model.io import save_model_dir
from asr.model.registry import build_model
from asr.pretrained.checkpoints import bart_style_rules, load_into, read_hf_dir, rename
from asr.text.normalize import TextNormalizer
from asr.text.speech2text import Speech2TextTokenizer

ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "silu": "swish", "swish": "swish"}
RULES: list[tuple[str, str | None]] = [
    (r"model\.encoder\.conv\.conv_layers\.(\d+)\.(weight|bias)", r"encoder.subsampling.conv.\1.\2"),
    (r"lm_head\.weight", "decoder.output.weight"),
    (r"model\.(encoder|decoder)\.embed_positions\.weights", None),  # a function of the position only
    *bart_style_rules(),
]


def speech2text_model_config(config: dict[str, Any], source: str) -> ModelConfig:
    """Our ModelConfig for a transformers Speech2TextConfig (as a dict); unsupported variants are errors."""
    try:
        checks = [
            (config["num_conv_layers"] == 2 and list(config["conv_kernel_sizes"]) == [5, 5],
             "the front-end must be 2 convolutions of kernel 5 (num_conv_layers, conv_kernel_sizes)"),
            (config.get("pad_token_id", 1) == 1, "pad_token_id must be 1 (fairseq positions start at 2)"),
            (config.get("activation_function", "relu") in ACTIVATIONS,
             f"activation_function must be one of {', '.join(ACTIVATIONS)}"),
        ]
        for ok, what in checks:
            if not ok:
                raise ValueError(f"{source}: config.json: unsupported Speech2Text variant: {what}")
        activation = ACTIVATIONS[config.get("activation_function", "relu")]
        scale = bool(config.get("scale_embedding", True))
        common = {"d_model": config["d_model"], "dropout": float(config.get("dropout", 0.0)),
                  "attn_dropout": float(config.get("attention_dropout", 0.0)), "activation": activation,
                  "pos_enc": "fairseq", "scale_embedding": scale, "normalize_before": True}
        encoder = EncoderConfig(n_heads=config["encoder_attention_heads"], n_layers=config["encoder_layers"],
                                ffn_dim=config["encoder_ffn_dim"], subsampling="conv1d4_glu",
                                subsampling_channels=config["conv_channels"], **common)
        decoder = DecoderConfig(n_heads=config["decoder_attention_heads"], n_layers=config["decoder_layers"],
                                ffn_dim=config["decoder_ffn_dim"], output_bias=False,
                                tie_embeddings=bool(config.get("tie_word_embeddings", True)), **common)
        return ModelConfig(vocab_size=config["vocab_size"],
                           input_dim=config["input_feat_per_channel"] * config["input_channels"],
                           encoder=encoder, decoder=decoder, ctc_weight=0.0, specaug=None)
    except KeyError as error:
        raise ValueError(f"{source}: config.json: missing {error}") from None


def speech2text_features(directory: Path, n_mels: int) -> FeatureConfig:
    """Kaldi fbank + utterance CMVN, as preprocessor_config.json (or transformers' defaults) says."""
    path = directory / "preprocessor_config.json"
    settings: dict[str, Any] = {}
    if path.is_file():
        try:
            settings = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
    cmvn = [settings.get(k, True) for k in ("do_ceptral_normalize", "normalize_means", "normalize_vars")]
    if any(cmvn) and not all(cmvn):
        raise ValueError(f"{path}: only full utterance CMVN (means and variances) or none is supported")
    if settings.get("num_mel_bins", n_mels) != n_mels:
        raise ValueError(f"{path}: num_mel_bins={settings['num_mel_bins']} but the model reads {n_mels} features")
    # torchaudio.compliance.kaldi.fbank's defaults (which transformers uses): low_freq 20 Hz.
    return FeatureConfig(kind="fbank", sample_rate=int(settings.get("sampling_rate", 16000)), n_mels=n_mels,
                         win_ms=25.0, hop_ms=10.0, n_fft=512, f_min=20.0, utterance_cmvn=all(cmvn))


def speech2text_tokenizer(directory: Path, sos_id: int) -> Speech2TextTokenizer:
    vocab_path, spm_path = directory / "vocab.json", directory / "sentencepiece.bpe.model"
    for path in (vocab_path, spm_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file (a Speech2Text directory holds its tokenizer's "
                                    "vocab.json and sentencepiece.bpe.model)")
    try:
        vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{vocab_path}: not valid JSON ({error})") from None
    tokens = sorted(vocab, key=vocab.get)
    if [vocab[t] for t in tokens] != list(range(len(tokens))):
        raise ValueError(f"{vocab_path}: ids are not 0..{len(tokens) - 1}")
    settings_path = directory / "tokenizer_config.json"
    settings = json.loads(settings_path.read_text(encoding="utf-8")) if settings_path.is_file() else {}
    normalizer = TextNormalizer(lowercase=bool(settings.get("do_lower_case", False)), remove_punctuation=False,
                                unicode_form=None)
    return Speech2TextTokenizer(tokens, spm_path.read_bytes(), sos_id, bool(settings.get("do_upper_case", False)),
                                normalizer)


def import_hf_speech2text(directory: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Convert a transformers Speech2TextForConditionalGeneration directory into the model directory `out_dir`."""
    directory = Path(directory)
    config, state = read_hf_dir(directory)
    source = str(directory)
    model_config = speech2text_model_config(config, source)
    state = rename(state, RULES, source)
    if model_config.decoder.tie_embeddings and "decoder.embed.weight" in state:
        state["decoder.output.weight"] = state["decoder.embed.weight"]
    tokenizer = speech2text_tokenizer(directory, int(config.get("decoder_start_token_id", 2)))
    if tokenizer.vocab_size != model_config.vocab_size:
        raise ValueError(f"{source}: the model has {model_config.vocab_size} outputs, vocab.json "
                         f"{tokenizer.vocab_size} tokens")
    model = build_model(model_config)
    state["cmvn.mean"], state["cmvn.istd"] = model.cmvn.mean, model.cmvn.istd  # CMVN is per utterance, in features
    load_into(model, state, source)
    return save_model_dir(out_dir, model, tokenizer, speech2text_features(directory, model_config.input_dim))
