"""Streaming training data from tar shards: sharded over ranks and DataLoader workers, shuffled, batched by duration.

    dataset = ShardDataset("data/train_shards/shards.json", FeatureExtractor(config), tokenizer,
                           max_seconds=300, rank=rank, world_size=world_size, num_workers=4)
    loader = DataLoader(dataset, batch_size=None, num_workers=4)
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        for batch in loader: ...          # asr.data.Batch, as from SpeechDataset + DynamicBatchSampler

Each epoch the shards are shuffled by (seed, epoch) and dealt out, whole, to world_size x num_workers
streams (balanced by seconds of audio): every shard goes to exactly one (rank, worker). A stream
reads its shards in turn through a shuffle buffer (`shuffle_buffer` utterances), cuts the shuffled
stream into chunks of `sort_buffer` utterances, sorts each chunk by duration and packs it into
batches whose padded size (batch size x longest utterance) is at most `max_seconds`, then yields
a chunk's batches in shuffled order. Every random choice is seeded by (seed, epoch, stream), so an
epoch's batches are the same in every run.

Because the index holds every utterance's duration, the batches of every stream are planned before
a shard is opened. With even_batches=True (what DDP needs: a rank with fewer batches would leave
the others waiting in a collective) every stream yields the largest stream's batch count, a
stream that runs out starting over on its own shards (in a new order), so a few utterances are
seen twice in an epoch, as with torch's DistributedSampler. even_batches=False yields each
utterance exactly once per epoch and lets the counts differ.

Resuming: load_state_dict({"epoch", "batches_done"}) makes the next iteration of that epoch skip
the rank's first `batches_done` batches. With even batches a DataLoader takes batches from its
workers in turn, so each worker knows how many of them were consumed and skips those without
decoding any audio (the shards are still read), the worker that comes first taking over the
stream whose batch is next. The resumed epoch then continues with exactly the
batches an uninterrupted run would have had, provided the shards, seed, world size and number of
workers are unchanged and no batch before the resume point was entirely undecodable (such a batch
is replaced by the next one, which a resumed run cannot know without decoding).
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from asr.data.dataset import Batch, ExampleMaker, collate
from asr.data.sampler import pack_batches
from asr.data.shards import ShardError, ShardIndex, ShardSample, decode_sample, read_shard
from asr.features import FeatureExtractor

if TYPE_CHECKING:
    from asr.text import Tokenizer

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class EpochPlan:
    """Which shards each stream (rank * num_workers + worker) reads in an epoch, and its batch count."""

    streams: tuple[tuple[int, ...], ...]  # shard indices per stream, in reading order
    batches: tuple[int, ...]  # batches each stream's shards give (one pass, without padding)

    @property
    def batches_per_stream(self) -> int:
        return max(self.batches)


class ShardDataset(IterableDataset):
    """Batches (asr.data.Batch) streamed from the shards of `index` for this rank; see the module docstring.

    features, tokenizer, task, prefix_tokens, speed_factors and waveforms mean what they mean for
    SpeechDataset. num_workers must be the DataLoader's (0 = no workers), since the shards are
    dealt out to the workers of every rank. Give the DataLoader batch_size=None.
    """

    def __init__(
        self,
        index: ShardIndex | str | os.PathLike,
        features: FeatureExtractor,
        tokenizer: Tokenizer | None = None,
        *,
        task: str = "asr",
        prefix_tokens: Sequence[str] = (),
        speed_factors: Sequence[float] = (),
        waveforms: bool = False,
        max_seconds: float | None = 120.0,
        max_batch_size: int | None = None,
        shuffle_buffer: int = 1000,
        sort_buffer: int = 500,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        even_batches: bool = True,
    ):
        self.index = index if isinstance(index, ShardIndex) else ShardIndex.load(index)
        self.maker = ExampleMaker(features, tokenizer, task=task, prefix_tokens=prefix_tokens, waveforms=waveforms)
        if task == "st" and tokenizer is not None and self.index.num_translated < self.index.num_utts:
            untranslated = self.index.num_utts - self.index.num_translated
            raise ValueError(f"ShardDataset: task 'st' needs target_text, which {untranslated} utterance(s) of "
                             f"{self.index.path} lack")
        if max_seconds is None and max_batch_size is None:
            raise ValueError("ShardDataset: give max_seconds, max_batch_size or both")
        checks = (("max_seconds", max_seconds is None or max_seconds > 0), ("max_batch_size",
                  max_batch_size is None or max_batch_size >= 1), ("shuffle_buffer", shuffle_buffer >= 0),
                  ("sort_buffer", sort_buffer >= 1), ("seed", seed >= 0), ("num_workers", num_workers >= 0),
                  ("rank", 0 <= rank < world_size))
        for name, ok in checks:
            if not ok:
                raise ValueError(f"ShardDataset: bad {name} (max_seconds > 0, max_batch_size >= 1, shuffle_buffer "
                                 f">= 0, sort_buffer >= 1, seed >= 0, num_workers >= 0, 0 <= rank < world_size)")
        if any(not (math.isfinite(f) and f > 0) for f in speed_factors):
            raise ValueError(f"ShardDataset: speed factors must be positive numbers, got {tuple(speed_factors)}")
        self.features, self.tokenizer, self.waveforms = features, tokenizer, waveforms
        self.max_seconds = math.inf if max_seconds is None else float(max_seconds)
        self.max_batch_size = max_batch_size or math.inf
        self.shuffle_buffer, self.sort_buffer, self.seed = shuffle_buffer, sort_buffer, seed
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        self.even_batches = even_batches
        self.speed_factors = tuple(float(f) for f in speed_factors)
        # [epoch, resume epoch (-1: none), batches to skip], in shared memory so that it reaches
        # persistent DataLoader workers.
        self._state = torch.tensor([0, -1, 0], dtype=torch.long).share_memory_()
        self._plans: dict[int, EpochPlan] = {}
        self.plan(0)  # too few shards is an error now rather than in a worker

    @property
    def streams_per_rank(self) -> int:
        return max(self.num_workers, 1)

    @property
    def epoch(self) -> int:
        return int(self._state[0])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to stream next (and forget a pending resume of another epoch)."""
        if epoch < 0:
            raise ValueError(f"ShardDataset.set_epoch: epoch must be >= 0, got {epoch}")
        self._state.copy_(torch.tensor([epoch, -1, 0]))

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume: the next iteration streams epoch state["epoch"] from the rank's batch state["batches_done"]."""
        missing = {"epoch", "batches_done"} - set(state)
        if missing:
            raise ValueError(f"ShardDataset.load_state_dict: missing key(s) {sorted(missing)}")
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        if not self.even_batches and done:
            raise ValueError("ShardDataset.load_state_dict: resuming inside an epoch needs even_batches=True")
        self.set_epoch(epoch)
        if not 0 <= done <= len(self):
            raise ValueError(f"ShardDataset.load_state_dict: batches_done={done} is outside [0, {len(self)}] for "
                             f"epoch {epoch}; were the shards, batch bounds, seed, world size or workers changed?")
        self._state.copy_(torch.tensor([epoch, epoch, done]))

    def __len__(self) -> int:
        """Batches this rank yields in the current epoch."""
        plan = self.plan(self.epoch)
        if self.even_batches:
            return plan.batches_per_stream * self.streams_per_rank
        first = self.rank * self.streams_per_rank
        return sum(plan.batches[first : first + self.streams_per_rank])

    # --- planning ---------------------------------------------------------------------------------

    def plan(self, epoch: int) -> EpochPlan:
        """The shards of every stream and their batch counts in `epoch` (the same in every process)."""
        if epoch not in self._plans:
            self._plans = {epoch: self._make_plan(epoch)}  # one epoch at a time is all that is needed
        return self._plans[epoch]

    def _make_plan(self, epoch: int) -> EpochPlan:
        shards = self.index.shards
        num_streams = self.world_size * self.streams_per_rank
        if len(shards) < num_streams:
            raise ShardError(
                f"{self.index.path}: {len(shards)} shard(s) cannot feed world_size {self.world_size} x "
                f"{self.streams_per_rank} DataLoader worker(s) = {num_streams} streams (each reads whole shards); "
                "write more, smaller shards (asr-shard --utts-per-shard / --shard-size-mb) or use fewer workers")
        # Deal the shuffled shards out, each to the stream with the least audio so far.
        order = np.random.default_rng([self.seed, epoch]).permutation(len(shards))
        heap = [(0.0, stream) for stream in range(num_streams)]
        assigned: list[list[int]] = [[] for _ in range(num_streams)]
        for i in order.tolist():
            seconds, stream = heapq.heappop(heap)
            assigned[stream].append(i)
            heapq.heappush(heap, (seconds + shards[i].seconds, stream))
        counts = []
        for stream, ids in enumerate(assigned):
            durations = [d for i in ids for d in shards[i].durations]
            counts.append(sum(1 for _ in self._batches(durations, float, epoch, stream, 0)))
        return EpochPlan(tuple(map(tuple, assigned)), tuple(counts))

    def _batches(self, items: Iterable[T], duration: Callable[[T], float], epoch: int, stream: int,
                 pass_: int) -> Iterator[list[T]]:
        """Shuffle buffer -> chunks sorted by duration -> packed batches in shuffled order (deterministic)."""
        shuffle_rng = np.random.default_rng([self.seed, epoch, stream, pass_, 0])
        order_rng = np.random.default_rng([self.seed, epoch, stream, pass_, 1])
        chunk: list[T] = []
        for item in _shuffled(items, self.shuffle_buffer, shuffle_rng):
            chunk.append(item)
            if len(chunk) == self.sort_buffer:
                yield from self._pack(chunk, duration, order_rng)
                chunk = []
        if chunk:
            yield from self._pack(chunk, duration, order_rng)

    def _pack(self, chunk: list[T], duration: Callable[[T], float], rng: np.random.Generator) -> Iterator[list[T]]:
        """Greedy packing of the chunk sorted by duration (as DynamicBatchSampler packs a bucket)."""
        ordered = sorted(chunk, key=duration)
        batches = pack_batches(ordered, [duration(item) for item in ordered], self.max_seconds, self.max_batch_size)
        for i in rng.permutation(len(batches)).tolist():
            yield batches[i]

    # --- streaming --------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if workers != self.streams_per_rank:
            raise ValueError(f"ShardDataset was built for num_workers={self.num_workers} but runs in a DataLoader "
                             f"with {workers if info is not None else 0}; give both the same number")
        epoch, resume_epoch, resume_batches = self._state.tolist()
        plan = self.plan(epoch)
        skip = 0
        if resume_epoch == epoch:
            # The DataLoader takes batches from its workers in turn, starting with worker 0, so after
            # `resume_batches` the next batch comes from stream resume_batches % workers: worker 0
            # takes that stream over, worker 1 the next, and so on; each skips its consumed batches.
            worker = (worker + resume_batches) % workers
            skip = resume_batches // workers + (1 if worker < resume_batches % workers else 0)
        stream = self.rank * workers + worker
        target = plan.batches_per_stream if self.even_batches else math.inf
        produced = 0
        for samples in self._stream(plan.streams[stream], epoch, stream):
            if produced >= target:
                return
            if produced < skip:
                produced += 1
                continue
            batch = self._decode(samples, epoch)
            if batch is not None:
                produced += 1
                yield batch

    def _stream(self, shard_ids: tuple[int, ...], epoch: int, stream: int) -> Iterator[list[ShardSample]]:
        """The stream's planned batches of samples: one pass over its shards, then (even_batches) more passes."""
        pass_ = 0
        while True:
            ids = list(shard_ids)
            if pass_ > 0:  # padding: the stream's shards again, in another order
                order = np.random.default_rng([self.seed, epoch, stream, pass_, 2]).permutation(len(ids))
                ids = [ids[i] for i in order.tolist()]
            samples = (s for i in ids for s in read_shard(self.index.shards[i].path,
                                                           expected=self.index.shards[i].num_utts))
            got = 0
            for batch in self._batches(samples, _sample_duration, epoch, stream, pass_):
                got += 1
                yield batch
            if not self.even_batches:
                return
            if got == 0:
                names = ", ".join(self.index.shards[i].path.name for i in ids)
                raise ShardError(f"{self.index.path}: no readable utterance in the shards of stream {stream}: {names}")
            pass_ += 1

    def _decode(self, samples: list[ShardSample], epoch: int) -> Batch | None:
        """Decode and featurise a planned batch; undecodable utterances are reported and left out."""
        examples: list[dict[str, Any]] = []
        sample_rate = self.features.config.sample_rate
        for sample in samples:
            wave = decode_sample(sample, sample_rate)
            if wave is None:
                continue
            try:
                examples.append(self.maker(sample.utterance, wave, self.speed_factor(sample.utterance.id, epoch)))
            except ValueError as e:  # AudioError (too short) or a text problem
                logger.warning("%s: key %r: %s; skipped", sample.shard, sample.key, e)
        return collate(examples) if examples else None

    def speed_factor(self, utt_id: str, epoch: int) -> float:
        """The speed perturbation factor of an utterance in `epoch` (1.0 when off), from (seed, epoch, id)."""
        if not self.speed_factors:
            return 1.0
        rng = np.random.default_rng([self.seed, epoch, zlib.crc32(utt_id.encode("utf-8"))])
        return self.speed_factors[int(rng.integers(len(self.speed_factors)))]


def _sample_duration(sample: ShardSample) -> float:
    return sample.utterance.duration


def _shuffled(items: Iterable[T], size: int, rng: np.random.Generator) -> Iterator[T]:
    """Items in a random order drawn through a buffer of `size` (size <= 1: the given order)."""
    if size <= 1:
        yield from items
        return
    buffer: list[T] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = int(rng.integers(size))
        yield buffer[j]
        buffer[j] = item
    for j in rng.permutation(len(buffer)).tolist():
        yield buffer[j]
