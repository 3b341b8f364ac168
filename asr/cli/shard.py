"""asr-shard: write a manifest's utterances into tar shards (WebDataset-style) for streaming training.

    asr-shard data/librispeech/train.jsonl data/librispeech/train_shards --shard-size-mb 256
    asr-run recipe=librispeech stage=train data.shards=data/librispeech/train_shards/shards.json

Writes OUT_DIR/shard-000000.tar ... and, last, OUT_DIR/shards.json (the index the training stream
plans its batches from). Segments (manifest `offset`) are cut and stored as FLAC; whole wav/flac
files are stored as they are (--audio-format flac re-encodes everything). Utterances whose audio
cannot be read are reported and skipped. Every (rank, DataLoader worker) of a training run reads
whole shards, so write at least world_size x num_workers shards (more is better for shuffling).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from asr.data.manifest import ManifestError, read_manifest
from asr.data.shards import AUDIO_FORMATS, DEFAULT_SHARD_MB, ShardError, write_shards


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr-shard", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("manifest", help="a JSONL manifest (asr-run's prepare stage writes them)")
    parser.add_argument("out_dir", help="the shard directory to write")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--shard-size-mb", type=float, metavar="MB",
                      help=f"close a shard once it holds this many megabytes (default {DEFAULT_SHARD_MB:g})")
    size.add_argument("--utts-per-shard", type=int, metavar="N", help="close a shard after N utterances")
    parser.add_argument("--audio-format", choices=AUDIO_FORMATS, default="auto",
                        help="auto: keep whole wav/flac files as they are, FLAC for the rest (default); flac: "
                        "re-encode everything as FLAC")
    parser.add_argument("--sample-rate", type=int, metavar="HZ",
                        help="store all audio at this rate (saves resampling in every epoch)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle before writing (default 0)")
    parser.add_argument("--no-shuffle", action="store_true", help="keep the manifest's order")
    parser.add_argument("--overwrite", action="store_true", help="replace the shards already in OUT_DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="asr-shard: %(message)s")
    try:
        utterances = read_manifest(args.manifest, check_audio=False)  # unreadable audio is skipped, not fatal
        index = write_shards(utterances, args.out_dir, shard_size_mb=args.shard_size_mb,
                             utts_per_shard=args.utts_per_shard, audio_format=args.audio_format,
                             sample_rate=args.sample_rate, shuffle_seed=None if args.no_shuffle else args.seed,
                             overwrite=args.overwrite, progress=not args.quiet)
    except (ManifestError, ShardError, ValueError, FileExistsError, OSError) as error:
        print(f"asr-shard: error: {error}", file=sys.stderr)
        return 2
    print(f"{index.path}: {index.num_utts} utterances ({index.total_seconds / 3600:.2f} h) in "
          f"{len(index.shards)} shards" + (f"; {len(index.skipped)} skipped (unreadable audio, see above)"
                                           if index.skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
