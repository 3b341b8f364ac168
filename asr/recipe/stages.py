"""The recipe stages, in order: prepare, tokenizer, train, average, decode, score.

Each stage reads what the stages before it wrote under `exp_dir` (or `data.dir`) and is safe to
rerun: prepare and tokenizer reuse what exists, train resumes from its last checkpoint.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from asr.data import DynamicBatchSampler, SpeechDataset, Utterance, collate, read_manifest
from asr.features import CMVNStats, FeatureExtractor
from asr.model import ModelConfig, build_model
from asr.model.io import CMVN_FILE, load_model, save_model_dir
from asr.recipe.config import STAGES, ExperimentConfig
from asr.recipe.prepare import prepare_corpus
from asr.text import Tokenizer, load_tokenizer, train_tokenizer
from asr.train import Trainer, average_experiment

logger = logging.getLogger(__name__)
TASK_TOKENS = ("<asr>", "<st>")


def run_stages(config: ExperimentConfig) -> None:
    """Run config.stages in their canonical order."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and tuple(config.stages) != ("train",):
        raise ValueError(f"under torchrun (WORLD_SIZE={world_size}) run only the train stage: add stage=train "
                         "and run the other stages in a single process")
    for name in STAGES:
        if name in config.stages:
            logger.info("stage %s (%s)", name, config.exp_dir)
            STAGE_FUNCTIONS[name](config)


def prepare(config: ExperimentConfig) -> None:
    settings = config.recipe.prepare_settings
    if config.data.holdout_speaker is not None:
        settings["holdout_speaker"] = config.data.holdout_speaker
    prepare_corpus(Path(config.data.dir), config.data.root, settings)


def tokenizer(config: ExperimentConfig) -> Tokenizer:
    """Train the tokenizer on the training transcripts (and translations), or reuse the saved one."""
    model_dir = config.model_dir
    if (model_dir / "tokenizer.json").is_file():
        logger.info("tokenizer: reusing %s", model_dir / "tokenizer.json")
        return load_tokenizer(model_dir)
    train = _read(config, config.data.train)
    texts = [u.text for u in train] + [u.target_text for u in train if u.target_text]
    settings = config.data.tokenizer
    langs = dict.fromkeys(f"<{lang}>" for lang in (config.data.source_lang, config.data.target_lang) if lang)
    result = train_tokenizer(texts, kind=settings.kind, vocab_size=settings.vocab_size,
                             extra_tokens=(*TASK_TOKENS, *langs), normalizer=settings.normalizer)
    result.save(model_dir)
    logger.info("tokenizer: %r saved to %s", result, model_dir)
    return result


def train(config: ExperimentConfig) -> None:
    """Train (resuming when the experiment has a checkpoint), then write the model directory."""
    tok = load_tokenizer(config.model_dir)
    features = FeatureExtractor(config.data.features)
    train_utts = _read(config, config.data.train)
    valid_utts = _read(config, config.data.valid)
    stats = _cmvn_stats(config, train_utts, features)
    model = build_model(ModelConfig.from_dict({**config.model, "vocab_size": tok.vocab_size,
                                               "input_dim": config.data.features.n_mels}))
    model.cmvn.set_stats(stats)
    seed = config.trainer.seed
    torch.manual_seed(seed)
    data = config.data
    train_set = SpeechDataset(train_utts, features, tok, task=config.task, prefix_tokens=config.prefix_tokens,
                              speed_factors=data.speed_perturb, seed=seed)
    valid_set = SpeechDataset(valid_utts, features, tok, task=config.task, prefix_tokens=config.prefix_tokens)
    sampler = DynamicBatchSampler(
        [u.duration for u in train_utts], max_seconds=data.max_seconds, max_batch_size=data.max_batch_size or None,
        seed=seed, num_buckets=data.num_buckets, rank=int(os.environ.get("RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")))
    trainer = Trainer(model, train_set, sampler, valid_set, config.trainer, config.optim, config.exp_dir,
                      tokenizer=tok)
    result = trainer.fit()
    logger.info("train: %s after %d steps (%d epochs)", result.stop_reason, result.step, result.epoch)
    if trainer.dist.is_main:
        save_model_dir(config.model_dir, trainer.model, tok, config.data.features, cmvn=stats)


def average(config: ExperimentConfig) -> None:
    """Average the best/last checkpoints into exp_dir/model.avg.pt and make it the model's weights."""
    path = average_experiment(config.exp_dir, num=config.average.num, by=config.average.by)
    speech = load_model(config.model_dir, weights=path)  # checks the averaged weights fit the model
    stats = CMVNStats.load(config.model_dir / CMVN_FILE)
    save_model_dir(config.model_dir, speech.model, speech.tokenizer, speech.feature_config, cmvn=stats)
    logger.info("average: %s -> %s", path, config.model_dir)


def decode(config: ExperimentConfig) -> None:
    """Decode every test set with the model directory; writes decode/<test>/hyp.txt and ref.txt."""
    speech = load_model(config.model_dir, device=config.trainer.device)
    options = config.decode_options
    for name in config.data.test:
        utterances = _read(config, name)
        dataset = SpeechDataset(utterances, speech.features)
        sampler = DynamicBatchSampler([u.duration for u in utterances], max_seconds=config.decode_batch_seconds,
                                      shuffle=False)
        hyps: dict[str, str] = {}
        with tqdm(total=len(utterances), desc=f"decode {name}", unit="utt") as bar:
            for indices in sampler:
                batch = collate([dataset[i] for i in indices])
                for utt_id, result in zip(batch.ids, speech.decode(batch.feats, batch.feat_lengths, options)):
                    hyps[utt_id] = result.text
                bar.update(len(indices))
        out = _decode_dir(config, name)
        _write_kaldi_text(out / "hyp.txt", {u.id: hyps[u.id] for u in utterances})
        _write_kaldi_text(out / "ref.txt", {u.id: _reference(config, u, speech.tokenizer) for u in utterances})
        logger.info("decode %s: %d utterances -> %s", name, len(utterances), out)


def score(config: ExperimentConfig) -> None:
    """Score decode/<test>/hyp.txt against ref.txt: results.json and RESULTS.md per test set and overall."""
    from asr.scoring import score_experiment

    metric = "bleu" if config.task == "st" else "wer"
    dirs = {name: _decode_dir(config, name) for name in config.data.test}
    summary = score_experiment(Path(config.exp_dir), dirs, metric=metric,
                               normalizer=config.data.tokenizer.normalizer, settings=options_summary(config))
    print(summary)


def options_summary(config: ExperimentConfig) -> dict[str, object]:
    """The settings a result depends on, for RESULTS.md."""
    options = config.decode_options
    return {"recipe": config.recipe.name, "task": config.task, "beam_size": options.beam_size,
            "ctc_weight": options.ctc_weight, "lm_weight": options.lm_weight,
            "length_penalty": options.length_penalty, "average": f"{config.average.by} {config.average.num}"}


STAGE_FUNCTIONS: dict[str, Callable[[ExperimentConfig], object]] = {
    "prepare": prepare, "tokenizer": tokenizer, "train": train, "average": average, "decode": decode,
    "score": score,
}


def _read(config: ExperimentConfig, name: str) -> list[Utterance]:
    path = config.data.manifest(name)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found; run the prepare stage first (stage=prepare)")
    utterances = read_manifest(path)
    if config.task == "st":
        missing = [u.id for u in utterances if not u.target_text]
        if missing:
            raise ValueError(f"{path}: task=st needs target_text, missing in {len(missing)} utterances "
                             f"(first: {missing[:3]})")
    return utterances


def _cmvn_stats(config: ExperimentConfig, utterances: list[Utterance], features: FeatureExtractor) -> CMVNStats:
    """Global CMVN statistics over up to data.cmvn_utts training utterances (computed once, then reused)."""
    path = config.model_dir / CMVN_FILE
    if path.is_file():
        return CMVNStats.load(path)
    chosen = random.Random(config.trainer.seed).sample(utterances, min(config.data.cmvn_utts, len(utterances)))
    dataset = SpeechDataset(chosen, features)
    stats = CMVNStats(config.data.features.n_mels)
    for i in tqdm(range(len(dataset)), desc="cmvn", unit="utt"):
        stats.update(dataset[i]["feats"])
    stats.save(path)
    return stats


def _reference(config: ExperimentConfig, utt: Utterance, tok: Tokenizer) -> str:
    return tok.normalizer(utt.target_text if config.task == "st" else utt.text)


def _decode_dir(config: ExperimentConfig, name: str) -> Path:
    return Path(config.exp_dir) / "decode" / name


def _write_kaldi_text(path: Path, texts: dict[str, str]) -> None:
    from asr.fileio import atomic_write_text

    atomic_write_text(path, "".join(f"{key} {text}".rstrip() + "\n" for key, text in texts.items()))
