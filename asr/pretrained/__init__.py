"""Pretrained models from other toolkits, converted into ordinary model directories of ours.

    import_whisper("tiny.pt", "models/whisper-tiny")       # an openai-whisper checkpoint
    import_hf("whisper-tiny/", "models/whisper-tiny")       # a transformers Whisper or Speech2Text directory
    speech = asr.load_model("models/whisper-tiny")

The architecture options these models need are options of our own model (asr.model.config), so the
result decodes, transcribes and scores like any model trained here (asr-transcribe, asr.load_model).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from asr.pretrained.checkpoints import read_hf_dir
from asr.pretrained.speech2text import import_hf_speech2text
from asr.pretrained.whisper import import_hf_whisper, import_whisper

HF_MODEL_TYPES = ("whisper", "speech_to_text")

__all__ = ["HF_MODEL_TYPES", "import_hf", "import_hf_speech2text", "import_hf_whisper", "import_whisper"]


def import_hf(directory: str | os.PathLike, out_dir: str | os.PathLike, vocab: str | os.PathLike | None = None) -> Path:
    """Convert a transformers model directory (config.json + weights) by its model_type: "whisper"
    (WhisperForConditionalGeneration) or "speech_to_text" (Speech2TextForConditionalGeneration).
    vocab: Whisper only, a vocabulary file when the directory has none."""
    config_path = Path(directory) / "config.json"
    if not config_path.is_file():
        read_hf_dir(directory)  # raises the error that names the missing file
    try:
        model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, json.JSONDecodeError, AttributeError) as error:
        raise ValueError(f"{config_path}: not a JSON object ({error})") from None
    if model_type == "whisper":
        return import_hf_whisper(directory, out_dir, vocab)
    if model_type == "speech_to_text":
        if vocab is not None:
            raise ValueError("vocab= applies to Whisper models only (Speech2Text reads its vocab.json)")
        return import_hf_speech2text(directory, out_dir)
    raise ValueError(f"{config_path}: model_type {model_type!r} is not supported (supported: "
                     f"{', '.join(HF_MODEL_TYPES)})")
