"""The recipe stages, in order: prepare, tokenizer, lm, train, average, decode, score.

Each stage reads what the stages before it wrote under `exp_dir` (or `data.dir`) and is safe to
rerun: prepare and tokenizer reuse what exists, lm and train resume from their last checkpoint.
The lm stage (recipes <corpus>_lm) trains a language model for shallow fusion with the
experiment's tokenizer, under {exp_dir}/lm; decode fuses it when decode.lm_weight > 0.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, Dataset
from tqdm import tqdm

from asr.data import DynamicBatchSampler, SpeechDataset, TextDataset, Utterance, collate, read_manifest
from asr.features import CMVNStats, FeatureExtractor
from asr.model import ModelConfig, build_model
from asr.model.io import CMVN_FILE, CONFIG_FILE, load_model, load_weights, save_model_dir
from asr.model.lm import LMConfig, build_lm, save_lm_dir
from asr.recipe.config import STAGES, ExperimentConfig
from asr.recipe.prepare import prepare_corpus
from asr.text import Tokenizer, load_tokenizer, train_tokenizer
from asr.train import Trainer, average_experiment, load_checkpoint
from asr.train.distributed import spawn_local
from asr.typed_config import from_dict

logger = logging.getLogger(__name__)
TASK_TOKENS = ("<asr>", "<st>")


def run_stages(config: ExperimentConfig) -> None:
    """Run config.stages in their canonical order."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and tuple(config.stages) not in (("train",), ("lm",)):
        raise ValueError(f"under torchrun (WORLD_SIZE={world_size}) run only the train (or lm) stage: add "
                         "stage=train and run the other stages in a single process")
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


def lm(config: ExperimentConfig) -> None:
    """Train the fusion language model (config.lm) with the experiment's tokenizer and the run's trainer and
    optim settings under {exp_dir}/lm, average its checkpoints as `average` does, and write the LM directory."""
    if not (config.model_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{config.model_dir / 'tokenizer.json'}: not found; the LM uses the speech model's "
                                "tokenizer: run the tokenizer stage first (stage=tokenizer)")
    tok = load_tokenizer(config.model_dir)
    if config.trainer.best_metric in ("valid_wer", "valid_ctc_wer"):
        raise ValueError(f"trainer.best_metric={config.trainer.best_metric}: a language model decodes no audio; "
                         "rank its checkpoints by valid_loss or valid_acc")
    train_set, lengths = _lm_texts(config, config.lm.text, config.data.train, tok, "lm.text")
    valid_set, _ = _lm_texts(config, config.lm.valid_text, config.data.valid, tok, "lm.valid_text")
    seed = config.trainer.seed
    torch.manual_seed(seed)
    model = build_lm(from_dict(LMConfig, {**config.lm.model, "vocab_size": tok.vocab_size}, where="config.lm.model"))
    sampler = DynamicBatchSampler(lengths, max_seconds=config.lm.max_tokens, seed=seed,
                                  num_buckets=config.data.num_buckets, rank=int(os.environ.get("RANK", "0")),
                                  world_size=int(os.environ.get("WORLD_SIZE", "1")))
    trainer = Trainer(model, train_set, sampler, valid_set, config.trainer, config.optim, config.lm_exp_dir)
    result = trainer.fit()
    logger.info("lm: %s after %d steps (%d epochs), best %s %s", result.stop_reason, result.step, result.epoch,
                config.trainer.best_metric, result.best_metric)
    if trainer.dist.is_main:
        averaged = average_experiment(config.lm_exp_dir, num=config.average.num, by=config.average.by)
        load_weights(trainer.model, load_checkpoint(averaged)["model"], averaged)
        save_lm_dir(config.lm_dir, trainer.model, tok)
        logger.info("lm: %s -> %s", averaged, config.lm_dir)


def train(config: ExperimentConfig) -> None:
    """Train (resuming when the experiment has a checkpoint), then write the model directory.
    trainer.num_procs > 1 (and not under torchrun): in that many processes started here."""
    tok = load_tokenizer(config.model_dir)
    features = FeatureExtractor(config.data.features)
    train_utts = [] if config.data.shards else _read(config, config.data.train)  # shards: streamed instead
    stats = _cmvn_stats(config, train_utts, features)  # before spawning, so that one process writes it
    if config.trainer.num_procs > 1 and "WORLD_SIZE" not in os.environ:
        logger.info("train: %d processes", config.trainer.num_procs)
        spawn_local(train, (config,), config.trainer.num_procs)
        return
    valid_utts = _read(config, config.data.valid)
    model = build_model(ModelConfig.from_dict({**config.model, "vocab_size": tok.vocab_size,
                                               "input_dim": config.data.features.n_mels}))
    model.cmvn.set_stats(stats)
    seed = config.trainer.seed
    torch.manual_seed(seed)
    train_set, sampler = _training_data(config, train_utts, features, tok)
    valid_set = SpeechDataset(valid_utts, features, tok, task=config.task, prefix_tokens=config.prefix_tokens)
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
    """Decode every test set with the model directory (fusing the LM when decode.lm_weight > 0); writes
    decode/<test>/hyp.txt and ref.txt."""
    options = config.decode_options
    speech = load_model(config.model_dir, device=config.trainer.device, lm=_fusion_lm(config),
                        dtype=config.decode_dtype)
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

    dirs = {name: _decode_dir(config, name) for name in config.data.test}
    summary = score_experiment(Path(config.exp_dir), dirs, metric=config.score_metric,
                               normalizer=config.data.tokenizer.normalizer, settings=options_summary(config))
    print(summary)


def options_summary(config: ExperimentConfig) -> dict[str, object]:
    """The settings a result depends on, for RESULTS.md."""
    options = config.decode_options
    summary: dict[str, object] = {
        "recipe": config.recipe.name, "task": config.task, "method": options.method,
        "beam_size": options.beam_size, "ctc_weight": options.ctc_weight, "lm_weight": options.lm_weight}
    if options.lm_weight > 0:
        summary["lm"] = str(config.lm_dir)
    summary |= {"length_penalty": options.length_penalty, "average": f"{config.average.by} {config.average.num}"}
    return summary | ({"dtype": config.decode_dtype} if config.decode_dtype != "float32" else {})


STAGE_FUNCTIONS: dict[str, Callable[[ExperimentConfig], object]] = {
    "prepare": prepare, "tokenizer": tokenizer, "lm": lm, "train": train, "average": average, "decode": decode,
    "score": score,
}


def _read(config: ExperimentConfig, name: str, check_audio: bool = True) -> list[Utterance]:
    path = config.data.manifest(name)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found; run the prepare stage first (stage=prepare)")
    return _check_targets(config, path, read_manifest(path, check_audio=check_audio))


def _check_targets(config: ExperimentConfig, path: Path, utterances: list[Utterance]) -> list[Utterance]:
    if config.task == "st":
        missing = [u.id for u in utterances if not u.target_text]
        if missing:
            raise ValueError(f"{path}: task=st needs target_text, missing in {len(missing)} utterances "
                             f"(first: {missing[:3]})")
    return utterances


def _lm_texts(config: ExperimentConfig, sources: tuple[str, ...], split: str, tok: Tokenizer,
              key: str) -> tuple[Dataset, list[int]]:
    """The LM's text and its lengths in tokens: `sources` (text files, one sentence a line, or JSONL
    manifests), else the `split` manifest; a manifest gives its transcripts (translations for task=st)."""
    if not sources:
        parts = [_manifest_texts(config, _read(config, split, check_audio=False), tok)]
    else:
        parts = []
        for source in sources:
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"{key}: {path}: no such file")
            if path.suffix == ".jsonl":
                utterances = _check_targets(config, path, read_manifest(path, check_audio=False))
                parts.append(_manifest_texts(config, utterances, tok))
            else:
                parts.append(TextDataset.from_file(path, tok))
    lengths = [n for part in parts for n in part.lengths]
    return (parts[0] if len(parts) == 1 else ConcatDataset(parts)), lengths


def _manifest_texts(config: ExperimentConfig, utterances: list[Utterance], tok: Tokenizer) -> TextDataset:
    texts = [(u.target_text or "") if config.task == "st" else u.text for u in utterances]
    return TextDataset(texts, tok, ids=[u.id for u in utterances])


def _fusion_lm(config: ExperimentConfig) -> Path | None:
    """The LM directory that decode fuses (decode.lm_weight > 0), or None."""
    if config.decode.lm_weight == 0:
        return None
    if not (config.lm_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"decode.lm_weight={config.decode.lm_weight} needs a language model, but "
                                f"{config.lm_dir} holds none: train one with the lm stage (stage=lm, as "
                                "recipe=synth_lm does for synth) or set lm.dir to one")
    return config.lm_dir


def _training_data(config: ExperimentConfig, utterances: list[Utterance], features: FeatureExtractor,
                   tok: Tokenizer) -> tuple[Dataset, DynamicBatchSampler | None]:
    """The training set and its sampler: streamed from data.shards (no sampler), or the train manifest."""
    data, seed = config.data, config.trainer.seed
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    common = {"task": config.task, "prefix_tokens": config.prefix_tokens, "speed_factors": data.speed_perturb,
              "seed": seed, "waveforms": data.features_on_device}
    if data.shards:
        from asr.data.stream import ShardDataset

        return ShardDataset(data.shards, features, tok, **common, max_seconds=data.max_seconds,
                            max_batch_size=data.max_batch_size or None, shuffle_buffer=data.shuffle_buffer,
                            rank=rank, world_size=world_size, num_workers=config.trainer.num_workers), None
    sampler = DynamicBatchSampler(
        [u.duration for u in utterances], max_seconds=data.max_seconds, max_batch_size=data.max_batch_size or None,
        seed=seed, num_buckets=data.num_buckets, rank=rank, world_size=world_size)
    return SpeechDataset(utterances, features, tok, **common), sampler


def _cmvn_stats(config: ExperimentConfig, utterances: list[Utterance], features: FeatureExtractor) -> CMVNStats:
    """Global CMVN statistics over up to data.cmvn_utts training utterances (computed once, then reused):
    a random sample of the manifest, or the first ones of the shards (which asr-shard writes shuffled)."""
    path = config.model_dir / CMVN_FILE
    if path.is_file():
        return CMVNStats.load(path)
    if config.data.shards:
        from asr.data.shards import ShardIndex, iter_waveforms

        index = ShardIndex.load(config.data.shards)
        total = min(config.data.cmvn_utts, index.num_utts)
        feats = (features.extract(wave) for _, wave in iter_waveforms(index, features.config.sample_rate, limit=total))
    else:
        chosen = random.Random(config.trainer.seed).sample(utterances, min(config.data.cmvn_utts, len(utterances)))
        dataset = SpeechDataset(chosen, features)
        total = len(dataset)
        feats = (dataset[i]["feats"] for i in range(total))
    stats = CMVNStats(config.data.features.n_mels)
    for utterance_feats in tqdm(feats, desc="cmvn", unit="utt", total=total):
        stats.update(utterance_feats)
    stats.save(path)
    return stats


def _reference(config: ExperimentConfig, utt: Utterance, tok: Tokenizer) -> str:
    return tok.normalizer(utt.target_text if config.task == "st" else utt.text)


def _decode_dir(config: ExperimentConfig, name: str) -> Path:
    return Path(config.exp_dir) / "decode" / name


def _write_kaldi_text(path: Path, texts: dict[str, str]) -> None:
    from asr.fileio import atomic_write_text

    atomic_write_text(path, "".join(f"{key} {text}".rstrip() + "\n" for key, text in texts.items()))
