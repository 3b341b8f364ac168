"""Transcribing audio files and arrays with a SpeechModel: segmentation, length-sorted batching, stitching.

`iter_transcribe` streams over any number of inputs with bounded memory: it plans the segments of
a few inputs at a time (a pool of at most `pool_seconds` of audio), sorts them by length, decodes
them in batches of at most `batch_seconds` of padded audio, and yields each input's DecodeResult
as soon as all its segments are done, in input order. Audio is read per batch, one segment at a
time, so a file of any length costs no more memory than its segments.

A bad input (missing, corrupt, undecodable) goes to `on_error` and is skipped; without an
`on_error` the error is raised.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from asr.audio import AudioError
from asr.decode.options import DecodeOptions, DecodeResult, Segment
from asr.segment import AudioReader, SegmenterConfig, Span, open_audio, plan_segments

if TYPE_CHECKING:
    from asr.model.io import SpeechModel

# Problems with one input that are reported and skipped rather than stopping the whole job.
INPUT_ERRORS = (AudioError, ValueError, OSError, sf.SoundFileError)


@dataclass(frozen=True)
class AudioInput:
    """One thing to transcribe: a file (or the stretch [offset, offset + duration) of one) or a waveform.

    id: a name for outputs (defaults to the file's stem). sample_rate: an array's rate (default:
    the model's).
    """

    audio: str | os.PathLike | np.ndarray | Tensor
    id: str | None = None
    offset: float = 0.0
    duration: float | None = None
    sample_rate: int | None = None

    @property
    def is_file(self) -> bool:
        return isinstance(self.audio, (str, os.PathLike))

    @property
    def name(self) -> str:
        """How messages name this input: its path, else its id."""
        if self.is_file:
            return os.fspath(self.audio)
        return self.id or "<array>"


ErrorHandler = Callable[[AudioInput, Exception], None]


class Transcript(NamedTuple):
    """What iter_transcribe yields for each good input: the result and the audio's duration (seconds)."""

    input: AudioInput
    result: DecodeResult
    duration: float


def transcribe(speech: SpeechModel, sources: Sequence[Any], options: DecodeOptions, *,
               batch_seconds: float = 120.0, batch_size: int = 16, segmenter: SegmenterConfig | None = None,
               on_error: ErrorHandler | None = None) -> list[DecodeResult]:
    """Transcribe (or translate) paths, arrays or AudioInputs; one DecodeResult per input, in order.

    Each result has .segments (times in seconds from the start of the input) and .audio (the
    path; None for arrays). Audio decoded in one piece keeps everything decoding gives (n-best,
    token log-probabilities); for audio cut into several segments, tokens and text are those of
    the segments in order and score is the sum of theirs. With `on_error`, bad inputs are
    reported to it and left out.
    """
    transcripts = iter_transcribe(speech, sources, options, batch_seconds=batch_seconds, batch_size=batch_size,
                                  segmenter=segmenter, on_error=on_error)
    return [t.result for t in transcripts]


def iter_transcribe(speech: SpeechModel, sources: Iterable[Any], options: DecodeOptions, *,
                    batch_seconds: float = 120.0, batch_size: int = 16, segmenter: SegmenterConfig | None = None,
                    on_error: ErrorHandler | None = None,
                    pool_seconds: float | None = None) -> Iterator[Transcript]:
    """Yield a Transcript for each good input, in input order (see the module docstring).

    batch_seconds: the most padded audio decoded at once (segments x longest segment);
    batch_size: the most segments decoded at once; pool_seconds: how much audio is planned ahead
    and sorted by length (default 8 x batch_seconds).
    """
    if batch_seconds <= 0 or batch_size < 1:
        raise ValueError(f"transcribe: batch_seconds must be > 0 and batch_size >= 1, got {batch_seconds}, "
                         f"{batch_size}")
    check_options(speech, options)
    segmenter = segmenter or SegmenterConfig()
    longest = speech.feature_config.max_seconds
    if longest is not None and segmenter.max_segment_s > longest:  # Whisper reads at most 30 s at a time
        segmenter = dataclasses.replace(segmenter, max_segment_s=longest)
    pool_limit = pool_seconds if pool_seconds is not None else 8 * batch_seconds
    inputs = (source if isinstance(source, AudioInput) else AudioInput(source) for source in sources)
    waiting: deque[_Job] = deque()  # jobs not yet yielded, in input order
    current: _Job | None = None  # the job whose segments are being planned
    pool: list[tuple[_Job, int, Span]] = []
    exhausted = False
    while True:
        pooled = 0.0
        while pooled < pool_limit and not exhausted:
            if current is None:
                item = next(inputs, None)
                if item is None:
                    exhausted = True
                    break
                current = _Job(item)
                waiting.append(current)
                try:
                    current.open(speech.sample_rate, segmenter)
                except INPUT_ERRORS as error:
                    current.fail(error)
                    current = None
                    continue
            try:
                span = next(current.spans)
            except StopIteration:
                current.planned = True
                current = None
                continue
            except INPUT_ERRORS as error:
                current.fail(error)
                current = None
                continue
            pool.append((current, current.num_spans, span))
            current.num_spans += 1
            pooled += span.duration
        for batch in _batches(pool, batch_seconds, batch_size):
            _decode_batch(speech, batch, options)
        pool.clear()
        while waiting and waiting[0].done:
            job = waiting.popleft()
            if job.error is not None:
                if on_error is None:
                    raise job.error
                on_error(job.item, job.error)
            else:
                assert job.audio is not None
                yield Transcript(job.item, job.result(speech.tokenizer), job.audio.duration)
        if exhausted and not waiting:
            return


def check_options(speech: SpeechModel, options: DecodeOptions) -> None:
    """Raise ValueError now if `options` do not suit this model (e.g. a target language its tokenizer
    lacks), rather than after the first batch of audio was read: decodes an empty batch."""
    feats = torch.zeros(0, 1, speech.feature_config.n_mels, device=speech.device)
    speech.decode(feats, torch.zeros(0, dtype=torch.long, device=speech.device), options)


@dataclass(eq=False)
class _Job:
    """One input on its way through: its planned spans and the results of those decoded so far."""

    item: AudioInput
    audio: AudioReader | None = None
    spans: Iterator[Span] = field(default_factory=lambda: iter(()))
    num_spans: int = 0
    planned: bool = False  # all spans are known
    decoded: dict[int, tuple[Span, DecodeResult]] = field(default_factory=dict)
    error: Exception | None = None

    def open(self, sample_rate: int, segmenter: SegmenterConfig) -> None:
        item = self.item
        self.audio = open_audio(item.audio, sample_rate, offset=item.offset, duration=item.duration,
                                source_rate=item.sample_rate)
        self.spans = plan_segments(self.audio, segmenter)

    def fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        close = getattr(self.spans, "close", None)
        if close is not None:  # a segment plan generator may hold the file open
            close()
        self.spans = iter(())
        self.planned = True

    @property
    def done(self) -> bool:
        return self.error is not None or (self.planned and len(self.decoded) == self.num_spans)

    def result(self, tokenizer: Any) -> DecodeResult:
        pieces = [self.decoded[i] for i in range(self.num_spans)]
        source = os.fspath(self.item.audio) if self.item.is_file else None
        if len(pieces) == 1:
            ((span, best),) = pieces
            return dataclasses.replace(best, segments=(Segment(span.start, span.end, best.text, best.tokens),),
                                       audio=source)
        segments = _stitch(pieces, tokenizer)
        tokens = tuple(t for s in segments for t in s.tokens)
        return DecodeResult(
            tokens=tokens,
            text=" ".join(s.text for s in segments),
            score=sum(best.score for _, best in pieces),
            segments=tuple(s for s in segments if s.text),
            audio=source,
        )


def _batches(pool: list[tuple[_Job, int, Span]], batch_seconds: float,
             batch_size: int) -> Iterator[list[tuple[_Job, int, Span]]]:
    """Longest first; a batch holds at most batch_size segments and batch_seconds of padded audio."""
    ordered = sorted(pool, key=lambda entry: -entry[2].duration)
    batch: list[tuple[_Job, int, Span]] = []
    for entry in ordered:
        longest = batch[0][2].duration if batch else entry[2].duration
        if batch and (len(batch) >= batch_size or (len(batch) + 1) * longest > batch_seconds):
            yield batch
            batch = []
        batch.append(entry)
    if batch:
        yield batch


@torch.no_grad()
def _decode_batch(speech: SpeechModel, batch: list[tuple[_Job, int, Span]], options: DecodeOptions) -> None:
    """Read each segment's audio (a failure fails its job only), then decode the rest in one batch."""
    waves: list[Tensor] = []
    entries = []
    for job, index, span in batch:
        if job.error is not None:
            continue
        try:
            assert job.audio is not None
            waves.append(job.audio.read(span, speech.sample_rate))
        except INPUT_ERRORS as error:
            job.fail(error)
            continue
        entries.append((job, index, span))
    if not waves:
        return
    feats, feat_lengths = _features(speech, waves)
    results = speech.decode(feats, feat_lengths, options)
    if len(results) != len(entries):
        raise RuntimeError(f"decode returned {len(results)} results for a batch of {len(entries)} segments")
    for (job, index, span), best in zip(entries, results):
        if job.error is None:
            job.decoded[index] = (span, best)


def _features(speech: SpeechModel, waves: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Waveforms -> padded features (B, T, F) and lengths (B,), each wave zero-padded to the
    shortest audio the encoder accepts (a blip of sound gives at least one encoder frame)."""
    config = speech.feature_config
    min_frames = speech.model.encoder.min_input_length
    min_samples = (min_frames - 1) * config.hop_length + config.win_length
    lengths = torch.tensor([max(len(w), min_samples) for w in waves], dtype=torch.long)
    padded = torch.zeros(len(waves), int(lengths.max()))
    for row, wave in enumerate(waves):
        padded[row, : len(wave)] = wave
    return speech.features(padded.to(speech.device), lengths)


# --- stitching overlapping windows -----------------------------------------------------------------


def _stitch(pieces: list[tuple[Span, DecodeResult]], tokenizer: Any) -> list[Segment]:
    """Segments from consecutive pieces; where two spans overlap (fixed windows), the tokens of the
    overlap are kept once and the times split at the middle of the overlap."""
    tokens = [list(best.tokens) for _, best in pieces]
    starts = [span.start for span, _ in pieces]
    ends = [span.end for span, _ in pieces]
    rewritten = [False] * len(pieces)
    for i in range(1, len(pieces)):
        (previous, _), (span, _) = pieces[i - 1], pieces[i]
        overlap = previous.end - span.start
        if overlap <= 0:
            continue
        keep, skip = overlap_cut(tokens[i - 1], tokens[i], overlap / previous.duration, overlap / span.duration)
        tokens[i - 1], tokens[i] = tokens[i - 1][:keep], tokens[i][skip:]
        rewritten[i - 1] = rewritten[i] = True
        ends[i - 1] = starts[i] = round(span.start + overlap / 2, 3)
    segments = []
    for i, (_, best) in enumerate(pieces):
        text = tokenizer.decode(tokens[i]) if rewritten[i] else best.text
        segments.append(Segment(starts[i], ends[i], text, tuple(tokens[i])))
    return segments


def overlap_cut(left: Sequence[int], right: Sequence[int], left_fraction: float,
                right_fraction: float) -> tuple[int, int]:
    """Where to join the transcripts of two overlapping windows: (tokens of `left` to keep, tokens
    of `right` to skip).

    left_fraction / right_fraction: the share of each window that is overlap. The longest common
    run of tokens between the end of `left` and the start of `right` is taken as the overlap and
    kept once (joined in its middle); when there is none, each side gives up the tokens of its
    half of the overlap, estimated from its token rate.
    """
    expected_left = len(left) * left_fraction
    expected_right = len(right) * right_fraction
    tail_len = min(len(left), math.ceil(1.5 * expected_left) + 2)
    head_len = min(len(right), math.ceil(1.5 * expected_right) + 2)
    tail_start = len(left) - tail_len
    match = SequenceMatcher(None, left[tail_start:], right[:head_len], autojunk=False).find_longest_match(
        0, tail_len, 0, head_len)
    if match.size >= max(2, round(min(expected_left, expected_right) / 4)):
        middle = match.size // 2
        return tail_start + match.a + middle, match.b + middle
    return len(left) - round(expected_left / 2), round(expected_right / 2)


# --- inputs -------------------------------------------------------------------------------------------

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac", ".sph", ".aif", ".aiff",
                              ".au", ".caf", ".w64", ".webm"})
MANIFEST_EXTENSIONS = frozenset({".jsonl"})


def collect_inputs(paths: Iterable[str | os.PathLike]) -> list[AudioInput]:
    """What the CLI transcribes: files as given, directories searched recursively for audio files
    (ids are their paths relative to the directory, without extension), and manifests (.jsonl;
    ids and offsets from the manifest). Paths that do not exist are kept, to be reported as bad
    inputs. Raises ManifestError for a malformed manifest and ValueError for ids that collide.
    """
    from asr.data.manifest import read_manifest

    inputs: list[AudioInput] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
            inputs += [AudioInput(str(p), id=_safe_id(p.relative_to(path).with_suffix("").as_posix())) for p in found]
        elif path.suffix.lower() in MANIFEST_EXTENSIONS and path.is_file():
            inputs += [AudioInput(u.audio, id=u.id, offset=u.offset, duration=u.duration)
                       for u in read_manifest(path, check_audio=False)]
        else:
            inputs.append(AudioInput(str(path), id=_safe_id(path.stem)))
    seen: dict[str, str] = {}
    clashes = []
    for item in inputs:
        assert item.id is not None
        if item.id in seen:
            clashes.append(f"{item.id!r}: {seen[item.id]} and {item.name}")
        seen.setdefault(item.id, item.name)
    if clashes:
        listed = "\n  ".join(clashes[:20])
        raise ValueError(f"{len(clashes)} inputs share an id with another input (outputs are named by id):\n  "
                         f"{listed}")
    return inputs


def _safe_id(text: str) -> str:
    """An utterance id: no whitespace (Kaldi-style `id text` lines)."""
    return "_".join(text.split()) or "_"
