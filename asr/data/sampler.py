"""Dynamic batching: batches of utterances of similar length whose padded size has an upper bound.

A padded batch costs (batch size x longest utterance in it) of compute and memory whatever the
lengths of its other utterances, so batches are bounded by that padded cost rather than by a count,
and are formed from utterances of similar length so that little of the cost is padding.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from typing import TypeVar

import numpy as np
from torch.utils.data import Sampler

T = TypeVar("T")


def pack_batches(items: Sequence[T], costs: Sequence[float], limit: float, max_size: float) -> list[list[T]]:
    """Greedily cut `items`, in order, into batches whose padded cost (size x largest item cost) is at
    most `limit` and whose size is at most `max_size`; an item over the limit forms a batch of its own."""
    batches: list[list[T]] = []
    batch: list[T] = []
    longest = 0.0
    for item, cost in zip(items, costs):
        longest_with = max(longest, cost)
        if batch and ((len(batch) + 1) * longest_with > limit or len(batch) >= max_size):
            batches.append(batch)
            batch, longest_with = [], cost
        batch.append(item)
        longest = longest_with
    if batch:
        batches.append(batch)
    return batches


class DynamicBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices whose padded cost is at most `max_seconds` (or `max_frames`).

    durations: seconds of each utterance, in dataset order (e.g. [u.duration for u in utterances]).
    max_seconds: bound on batch size x longest duration in the batch, in seconds; or
    max_frames: the same bound in feature frames of `frame_shift` seconds. At most one of the two.
    max_batch_size: bound on the number of utterances in a batch (alone it gives fixed-size batches).
    An utterance longer than the bound forms a batch of its own (a warning says so once); nothing
    is dropped.

    shuffle=True: utterances are sorted by duration and cut into `num_buckets` buckets of equal
    size; each bucket is shuffled, the buckets (in order of duration) are packed into batches
    greedily, and the order of the batches is shuffled. Both shuffles are seeded by (seed, epoch),
    so every epoch has different batches and every run (and every rank) has the same ones.
    shuffle=False: batches of the utterances sorted by duration, shortest first, the same in every
    epoch (for decoding).

    Sharding (world_size > 1): each rank takes every world_size-th batch, starting at `rank`. As
    torch's DistributedSampler does, when the batch count does not divide evenly, batches from the
    start of the list are reused to pad it, so that every rank gets the same number of batches (and
    no rank waits forever in a collective): a few utterances are then seen twice in an epoch, and
    decoding with several ranks must drop repeated utterance ids.

    Resuming: state_dict() is {"epoch", "batches_done"}; after load_state_dict() the next
    iteration of that epoch skips its first `batches_done` batches (once: the epoch after starts
    at its first batch). The sampler counts the batches it has handed out, but a DataLoader with
    workers fetches batches ahead of the training loop, so with workers the training loop should
    save {"epoch": epoch, "batches_done": steps taken in this epoch} itself.
    """

    def __init__(
        self,
        durations: Sequence[float],
        *,
        max_seconds: float | None = None,
        max_frames: int | None = None,
        frame_shift: float = 0.01,
        max_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        num_buckets: int = 10,
        rank: int = 0,
        world_size: int = 1,
    ):
        lengths = np.asarray(durations, dtype=np.float64)
        if lengths.ndim != 1 or lengths.size == 0:
            raise ValueError("DynamicBatchSampler: durations must be a non-empty sequence of seconds")
        bad = np.flatnonzero(~np.isfinite(lengths) | (lengths <= 0))
        if bad.size:
            raise ValueError(f"DynamicBatchSampler: duration of index {bad[0]} is {lengths[bad[0]]}, expected > 0")
        if max_seconds is not None and max_frames is not None:
            raise ValueError("DynamicBatchSampler: give max_seconds or max_frames, not both")
        if max_seconds is None and max_frames is None and max_batch_size is None:
            raise ValueError("DynamicBatchSampler: give max_seconds, max_frames or max_batch_size")
        for name, value in (("max_seconds", max_seconds), ("max_frames", max_frames), ("frame_shift", frame_shift)):
            if value is not None and not value > 0:
                raise ValueError(f"DynamicBatchSampler: {name} must be positive, got {value}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"DynamicBatchSampler: max_batch_size must be >= 1, got {max_batch_size}")
        if num_buckets < 1:
            raise ValueError(f"DynamicBatchSampler: num_buckets must be >= 1, got {num_buckets}")
        if seed < 0:
            raise ValueError(f"DynamicBatchSampler: seed must be >= 0, got {seed}")
        if not 0 <= rank < world_size:
            raise ValueError(f"DynamicBatchSampler: rank {rank} is not in [0, world_size={world_size})")

        if max_frames is not None:
            self.costs, self.limit = lengths / frame_shift, float(max_frames)
        else:
            self.costs, self.limit = lengths, math.inf if max_seconds is None else float(max_seconds)
        self.max_batch_size = max_batch_size or len(lengths)
        self.shuffle, self.seed, self.num_buckets = shuffle, seed, num_buckets
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        # Stable sort: equal durations keep dataset order, so the sorted order is reproducible.
        self._sorted = np.argsort(lengths, kind="stable")
        self._batches_done = 0
        self._resume_epoch: int | None = None
        self._cache: tuple[int, list[list[int]]] | None = None

        oversized = np.flatnonzero(self.costs > self.limit)
        if oversized.size:
            longest = int(oversized[np.argmax(lengths[oversized])])
            unit = "frames" if max_frames is not None else "seconds"
            warnings.warn(
                f"DynamicBatchSampler: {oversized.size} utterance(s) are longer than the batch bound "
                f"({self.limit:g} {unit}) and each forms a batch of its own; the longest is index {longest} "
                f"({lengths[longest]:.2f} s)",
                stacklevel=2,
            )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields (call before each epoch)."""
        if epoch != self.epoch:
            self._batches_done = 0
        self.epoch = epoch

    def _pack(self, indices: np.ndarray) -> list[list[int]]:
        return pack_batches(indices.tolist(), self.costs[indices].tolist(), self.limit, self.max_batch_size)

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """All batches of `epoch`, before sharding; the same on every rank."""
        if not self.shuffle:
            return self._pack(self._sorted)
        rng = np.random.default_rng([self.seed, epoch])
        buckets = np.array_split(self._sorted, min(self.num_buckets, len(self._sorted)))
        # Packed as one sequence, bucket after bucket: a batch may straddle two neighbouring buckets,
        # so small data sets (few utterances per bucket) are not cut into small batches at every boundary.
        batches = self._pack(np.concatenate([rng.permutation(bucket) for bucket in buckets]))
        return [batches[i] for i in rng.permutation(len(batches))]

    def _rank_batches(self) -> list[list[int]]:
        """This rank's batches of the current epoch (padded to an equal count on every rank)."""
        if self._cache is None or self._cache[0] != self.epoch:
            batches = self._epoch_batches(self.epoch)
            per_rank = math.ceil(len(batches) / self.world_size)
            padding = per_rank * self.world_size - len(batches)
            batches = batches + [batches[i % len(batches)] for i in range(padding)]
            self._cache = (self.epoch, batches[self.rank :: self.world_size])
        return self._cache[1]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._rank_batches()
        start = 0
        if self._resume_epoch is not None:
            if self._resume_epoch == self.epoch:
                start = self._batches_done
            self._resume_epoch = None  # one-shot: later iterations start at the first batch
        self._batches_done = start
        for batch in batches[start:]:
            # Counted before the yield: while the consumer works on batch k, state_dict() says k are done.
            self._batches_done += 1
            yield batch

    def __len__(self) -> int:
        """Batches per epoch on this rank (the full count, also when resuming mid-epoch)."""
        return len(self._rank_batches())

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_done": self._batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume: the next iteration yields epoch state["epoch"] from batch state["batches_done"] on."""
        missing = {"epoch", "batches_done"} - set(state)
        if missing:
            raise ValueError(f"DynamicBatchSampler.load_state_dict: missing key(s) {sorted(missing)}")
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        self.set_epoch(epoch)
        if not 0 <= done <= len(self):
            raise ValueError(
                f"DynamicBatchSampler.load_state_dict: batches_done={done} is outside [0, {len(self)}] for "
                f"epoch {epoch}; were the durations, bounds, seed or world size changed?"
            )
        self._batches_done, self._resume_epoch = done, epoch
