"""From utterances to padded training batches: audio -> (speed perturbation) -> features, text -> token ids."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, Sampler

from asr.audio import AudioError, load_audio
from asr.data.manifest import Utterance
from asr.features import FeatureExtractor, speed_perturb
from asr.text.tokenizer import IGNORE_ID

if TYPE_CHECKING:
    from asr.text import Tokenizer

TASKS = ("asr", "st")


class ExampleMaker:
    """An utterance's waveform and texts -> one example: features (or the waveform) and token ids.

    Shared by SpeechDataset (audio files) and ShardDataset (tar shards), so both give the same
    examples. waveforms=True: the example holds "wave" (S,) instead of "feats", for training with
    the features computed on the training device (see Batch.with_features).
    """

    def __init__(
        self,
        features: FeatureExtractor,
        tokenizer: Tokenizer | None = None,
        *,
        task: str = "asr",
        prefix_tokens: Sequence[str] = (),
        waveforms: bool = False,
    ):
        if task not in TASKS:
            raise ValueError(f"SpeechDataset: task must be one of {TASKS}, got {task!r}")
        if prefix_tokens and tokenizer is None:
            raise ValueError("SpeechDataset: prefix_tokens need a tokenizer")
        self.features, self.tokenizer, self.task, self.waveforms = features, tokenizer, task, waveforms
        self.prefix = torch.tensor(
            [tokenizer.token_to_id(t) for t in prefix_tokens] if tokenizer else [], dtype=torch.long
        )

    def _encode(self, text: str) -> Tensor:
        return torch.tensor(self.tokenizer.encode(text), dtype=torch.long)

    def __call__(self, utt: Utterance, wave: Tensor, speed_factor: float = 1.0) -> dict:
        """wave (S,) at the features' sample rate -> {"id", "feats" (T, F) | "wave" (S',), "targets" (N,),
        "ctc_targets" (M,), "prefix" (P,)}. Audio too short for one frame raises AudioError."""
        sample_rate = self.features.config.sample_rate
        if speed_factor != 1.0:
            wave = speed_perturb(wave, sample_rate, speed_factor)
        if self.waveforms:
            if self.features.num_frames(wave.numel()) == 0:
                raise AudioError(f"utterance {utt.id!r}: {utt.audio}: audio of {wave.numel()} samples is too short "
                                 f"for one {self.features.config.win_ms} ms frame")
            signal = {"wave": wave.float().contiguous()}
        else:
            try:
                signal = {"feats": self.features.extract(wave)}
            except ValueError as e:  # audio too short for a single frame
                raise AudioError(f"utterance {utt.id!r}: {utt.audio}: {e}") from e
        if self.tokenizer is None:
            targets = ctc_targets = torch.zeros(0, dtype=torch.long)
        elif self.task == "st":
            if utt.target_text is None:
                raise ValueError(f"utterance {utt.id!r}: task 'st' needs target_text")
            targets, ctc_targets = self._encode(utt.target_text), self._encode(utt.text)
        else:
            targets = ctc_targets = self._encode(utt.text)
        return {"id": utt.id, **signal, "targets": targets, "ctc_targets": ctc_targets, "prefix": self.prefix}


class SpeechDataset(Dataset):
    """Examples for training and evaluation, one per utterance.

    task "asr": targets = ctc_targets = tokenizer.encode(text).
    task "st":  targets = tokenizer.encode(target_text), ctc_targets = tokenizer.encode(text) (the
                source transcript, for an auxiliary CTC loss on the encoder).
    prefix_tokens: tokens every target sequence starts with after <sos> (e.g. "<st>", "<de>"), as ids.
    tokenizer None: no targets (all three token tensors are empty), e.g. to compute CMVN statistics.

    speed_factors: e.g. (0.9, 1.0, 1.1) for speed perturbation (for training sets only). The factor of
    an utterance is drawn from (seed, epoch, index), so it changes with set_epoch() but a run is
    reproducible, also across DataLoader workers. Perturbation by factor f changes the utterance's
    length to duration / f, so batches bounded by manifest durations may hold up to 1 / min(f) times
    more audio than their bound.

    waveforms=True: examples hold the waveform "wave" (S,) instead of "feats" (after speed
    perturbation), and the trainer computes the features on its device (data.features_on_device).

    Bad audio raises AudioError naming the utterance id and path: skipping it here would change the
    batches the sampler planned, so validate training data up front (read_manifest checks the files exist).
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        features: FeatureExtractor,
        tokenizer: Tokenizer | None = None,
        *,
        task: str = "asr",
        prefix_tokens: Sequence[str] = (),
        speed_factors: Sequence[float] = (),
        seed: int = 0,
        waveforms: bool = False,
    ):
        self.maker = ExampleMaker(features, tokenizer, task=task, prefix_tokens=prefix_tokens, waveforms=waveforms)
        for factor in speed_factors:
            if not (math.isfinite(factor) and factor > 0):
                raise ValueError(f"SpeechDataset: speed factors must be positive numbers, got {factor}")
        if seed < 0:
            raise ValueError(f"SpeechDataset: seed must be >= 0, got {seed}")
        self.utterances = list(utterances)
        if task == "st" and tokenizer is not None:
            untranslated = [u.id for u in self.utterances if u.target_text is None]
            if untranslated:
                shown = ", ".join(map(repr, untranslated[:10])) + (" ..." if len(untranslated) > 10 else "")
                raise ValueError(
                    f"SpeechDataset: task 'st' needs target_text, which {len(untranslated)} utterance(s) lack: {shown}"
                )
        self.features = features
        self.tokenizer = tokenizer
        self.task = task
        self.waveforms = waveforms
        self.prefix = self.maker.prefix
        self.speed_factors = tuple(float(f) for f in speed_factors)
        self.seed = seed
        # In shared memory so that set_epoch() reaches persistent DataLoader workers, which hold
        # their own copy of the dataset made when they started.
        self._epoch = torch.zeros((), dtype=torch.long).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch that seeds random choices (call before iterating the epoch's DataLoader)."""
        if epoch < 0:
            raise ValueError(f"SpeechDataset.set_epoch: epoch must be >= 0, got {epoch}")
        self._epoch.fill_(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def speed_factor(self, index: int) -> float:
        """The speed perturbation factor of utterance `index` in the current epoch (1.0 when off)."""
        if not self.speed_factors:
            return 1.0
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return self.speed_factors[int(rng.integers(len(self.speed_factors)))]

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> dict:
        """-> {"id", "feats" (T, F) float32 (or "wave" (S,) with waveforms=True), "targets" (N,),
        "ctc_targets" (M,), "prefix" (P,)} (int64 ids)."""
        utt = self.utterances[index]
        sample_rate = self.features.config.sample_rate
        try:
            wave = load_audio(utt.audio, sample_rate=sample_rate, offset=utt.offset, duration=utt.duration)
        except AudioError as e:
            raise AudioError(f"utterance {utt.id!r}: {e}") from e
        return self.maker(utt, wave, self.speed_factor(index))


@dataclass
class Batch:
    """A padded batch. Token tensors are int64 and padded with IGNORE_ID (-1); feats with 0.0.

    A batch of waveforms (from a dataset with waveforms=True) has `waves` and `wave_lengths`, and
    feats = feat_lengths = None until with_features() computes them (on the training device).
    """

    ids: list[str]
    feats: Tensor | None  # (B, T, F) float32
    feat_lengths: Tensor | None  # (B,)
    targets: Tensor  # (B, N)
    target_lengths: Tensor  # (B,)
    ctc_targets: Tensor  # (B, M)
    ctc_target_lengths: Tensor  # (B,)
    prefix: Tensor  # (B, P)
    waves: Tensor | None = None  # (B, S) float32, zero-padded
    wave_lengths: Tensor | None = None  # (B,) samples

    def to(self, device: torch.device | str) -> Batch:
        """A copy with every tensor on `device`; copies from pinned memory do not block the host."""
        return self._map(lambda t: t.to(device, non_blocking=t.is_pinned()))

    def pin_memory(self) -> Batch:
        """A copy in page-locked memory (called by a DataLoader with pin_memory=True; needs CUDA)."""
        return self._map(Tensor.pin_memory)

    def with_features(self, features: FeatureExtractor, device: torch.device | str | None = None) -> Batch:
        """A batch of waveforms -> the same batch with feats (B, T, F) computed by `features` on `device`
        (default: where the waves are) and no waves; a batch that has feats is returned as it is.

        The waves move to `device` while wave_lengths stay where they are (on the host, the
        extractor needs no device-to-host copy), so `features` must already be on `device`.
        """
        if self.waves is None:
            return self
        waves = self.waves if device is None else self.waves.to(device, non_blocking=self.waves.is_pinned())
        feats, feat_lengths = features(waves, self.wave_lengths)
        return replace(self, feats=feats, feat_lengths=feat_lengths.to(feats.device), waves=None, wave_lengths=None)

    def _map(self, fn: Callable[[Tensor], Tensor]) -> Batch:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: fn(v) if isinstance(v, Tensor) else v for k, v in values.items()})


def collate(examples: list[dict]) -> Batch:
    """Pad a list of SpeechDataset examples (all with "feats", or all with "wave") into a Batch."""
    if not examples:
        raise ValueError("collate: no examples")
    prefix_lengths = {len(e["prefix"]) for e in examples}
    if len(prefix_lengths) > 1:
        raise ValueError(f"collate: examples have prefixes of different lengths {sorted(prefix_lengths)}")
    signal = "wave" if "wave" in examples[0] else "feats"
    mixed = [e["id"] for e in examples if signal not in e]
    if mixed:
        raise ValueError(f"collate: the first example has {signal!r} but {mixed[:5]} do not")

    def lengths(key: str) -> Tensor:
        return torch.tensor([len(e[key]) for e in examples], dtype=torch.long)

    def padded(key: str, value: float) -> Tensor:
        return pad_sequence([e[key] for e in examples], batch_first=True, padding_value=value)

    is_wave = signal == "wave"
    return Batch(
        ids=[e["id"] for e in examples],
        feats=None if is_wave else padded("feats", 0.0),
        feat_lengths=None if is_wave else lengths("feats"),
        targets=padded("targets", IGNORE_ID),
        target_lengths=lengths("targets"),
        ctc_targets=padded("ctc_targets", IGNORE_ID),
        ctc_target_lengths=lengths("ctc_targets"),
        prefix=torch.stack([e["prefix"] for e in examples]),
        waves=padded("wave", 0.0) if is_wave else None,
        wave_lengths=lengths("wave") if is_wave else None,
    )


def make_dataloader(dataset: SpeechDataset, sampler: Sampler[list[int]], num_workers: int = 0) -> DataLoader:
    """A DataLoader of Batches in the order of `sampler` (e.g. a DynamicBatchSampler).

    Workers, when any, persist across epochs (no start-up cost per epoch); set_epoch() on the
    dataset and the sampler still reaches them.
    """
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
