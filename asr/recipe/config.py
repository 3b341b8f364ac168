"""The experiment config: Hydra's resolved dict, turned into typed dataclasses at the edge.

Stages (asr/recipe/stages.py) only ever see an ExperimentConfig; no library module reads Hydra.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asr.decode.options import DecodeOptions
from asr.features import FeatureConfig
from asr.model.io import DEFAULT_CTC_WEIGHT, DTYPES, apply_task_defaults
from asr.text import TextNormalizer
from asr.train.config import OptimConfig, TrainerConfig
from asr.typed_config import from_dict

STAGES = ("prepare", "tokenizer", "lm", "train", "average", "decode", "score")
TASKS = ("asr", "st")


@dataclass(frozen=True)
class TokenizerSettings:
    """kind: char | bpe | unigram; vocab_size counts every id (bpe/unigram only)."""

    kind: str = "char"
    vocab_size: int = 0
    normalizer: TextNormalizer = TextNormalizer()


@dataclass(frozen=True)
class DataConfig:
    """Where the manifests are and how they become batches. Manifests: {dir}/{name}.jsonl."""

    dir: str = "data/corpus"
    root: str | None = None
    train: str = "train"
    valid: str = "dev"
    test: tuple[str, ...] = ("test",)
    source_lang: str = "en"
    target_lang: str = "de"
    features: FeatureConfig = FeatureConfig()
    tokenizer: TokenizerSettings = TokenizerSettings()
    speed_perturb: tuple[float, ...] = ()
    cmvn_utts: int = 1000
    max_seconds: float = 120.0
    max_batch_size: int = 0
    num_buckets: int = 10
    holdout_speaker: str | None = None  # for corpora that support a speaker-independent test (fsdd)
    shards: str | None = None  # shards.json from asr-shard: training streams from these tar shards
    shuffle_buffer: int = 1000  # utterances in the shard stream's shuffle buffer
    features_on_device: bool = False  # data workers only decode audio; the trainer computes features

    def manifest(self, name: str) -> Path:
        return Path(self.dir) / f"{name}.jsonl"


@dataclass(frozen=True)
class AverageConfig:
    """Average the `num` best (by the trainer's best_metric) or last checkpoints into the model."""

    num: int = 5
    by: str = "best"

    def __post_init__(self) -> None:
        if self.num < 1 or self.by not in ("best", "last"):
            raise ValueError(f"average: num must be >= 1 and by 'best' or 'last', got num={self.num}, by={self.by!r}")


@dataclass(frozen=True)
class LMSettings:
    """The language model for shallow fusion: the `lm` stage trains it with the experiment's tokenizer
    (and the run's trainer/optim/average settings), `decode` fuses it when decode.lm_weight > 0.

    dir: the LM directory (default: {exp_dir}/lm/model; training state goes to {exp_dir}/lm).
    text / valid_text: what it learns from: text files (one sentence a line) or JSONL manifests
        (their transcripts; for task=st their translations). Default: the data.train / data.valid manifests.
    model: asr.model.lm.LMConfig fields (vocab_size comes from the tokenizer).
    max_tokens: dynamic batching: padded tokens per batch.
    """

    dir: str | None = None
    text: tuple[str, ...] = ()
    valid_text: tuple[str, ...] = ()
    model: dict[str, Any] = field(default_factory=dict)
    max_tokens: int = 20000

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"lm.max_tokens={self.max_tokens}: expected a positive number of tokens")


@dataclass(frozen=True)
class ScoreConfig:
    """metric: how the score stage ranks results: wer | cer (e.g. Chinese, written without spaces) |
    bleu; None = bleu for task=st, wer otherwise."""

    metric: str | None = None

    def __post_init__(self) -> None:
        from asr.scoring import METRICS

        if self.metric is not None and self.metric not in METRICS:
            raise ValueError(f"score.metric={self.metric!r}: expected one of {METRICS} or null")


@dataclass(frozen=True)
class RecipeConfig:
    """name: the recipe; stages: its default stage list; prepare: {"kind": preparer, **its arguments}.

    tiny (mode=tiny): prepare with `tiny_prepare` merged over `prepare`, for smoke runs and tests.
    """

    name: str
    stages: tuple[str, ...] = STAGES
    prepare: dict[str, Any] = field(default_factory=dict)
    tiny_prepare: dict[str, Any] = field(default_factory=dict)
    tiny: bool = False

    @property
    def prepare_settings(self) -> dict[str, Any]:
        return {**self.prepare, **self.tiny_prepare} if self.tiny else dict(self.prepare)


@dataclass(frozen=True)
class ExperimentConfig:
    recipe: RecipeConfig
    task: str = "asr"
    exp_dir: str = "exp/run"
    stages: tuple[str, ...] = STAGES
    data: DataConfig = DataConfig()
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig minus vocab_size/input_dim
    optim: OptimConfig = OptimConfig()
    trainer: TrainerConfig = TrainerConfig()
    decode: DecodeOptions = DecodeOptions()
    decode_batch_seconds: float = 300.0
    decode_dtype: str = "float32"  # what the decode stage computes in (asr.model.io.DTYPES)
    average: AverageConfig = AverageConfig()
    lm: LMSettings = LMSettings()
    score: ScoreConfig = ScoreConfig()

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task={self.task!r}: expected one of {TASKS}")
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ValueError(f"stages: unknown stage(s) {unknown}; stages are {list(STAGES)}")
        if self.decode_dtype not in DTYPES:
            raise ValueError(f"decode_dtype={self.decode_dtype!r}: expected one of {', '.join(DTYPES)}")
        if self.task == "st" and self.decode.ctc_weight not in (0.0, DEFAULT_CTC_WEIGHT):
            raise ValueError(f"decode.ctc_weight={self.decode.ctc_weight} with task=st: the CTC head models the "
                             "source transcript, not the translation; translation decodes with decode.ctc_weight=0")

    @property
    def model_dir(self) -> Path:
        return Path(self.exp_dir) / "model"

    @property
    def lm_exp_dir(self) -> Path:
        """Where the lm stage trains (checkpoints, metrics.jsonl), apart from the speech model's."""
        return Path(self.exp_dir) / "lm"

    @property
    def lm_dir(self) -> Path:
        """The language-model directory: lm.dir, or {exp_dir}/lm/model."""
        return Path(self.lm.dir) if self.lm.dir is not None else self.lm_exp_dir / "model"

    @property
    def score_metric(self) -> str:
        """score.metric, or its task default (bleu for st, wer for asr)."""
        return self.score.metric or ("bleu" if self.task == "st" else "wer")

    @property
    def prefix_tokens(self) -> tuple[str, ...]:
        """Forced decoder prefix: <asr>, or <st><target_lang> for translation."""
        return ("<asr>",) if self.task == "asr" else ("<st>", f"<{self.data.target_lang}>")

    @property
    def decode_options(self) -> DecodeOptions:
        """The decode section with the task's prefix; task=st decodes without CTC (apply_task_defaults)."""
        target = self.data.target_lang if self.task == "st" else None
        return apply_task_defaults(self.decode.replace(task=self.task, target_lang=target))

    @classmethod
    def from_hydra(cls, values: dict[str, Any]) -> ExperimentConfig:
        """`values`: the resolved Hydra config as plain containers. `stage` (one stage) wins over `stages`."""
        values = dict(values)
        stage = values.pop("stage", None)
        values.pop("hydra", None)
        if stage is not None:
            values["stages"] = [stage]
        return from_dict(cls, values, where="config")
