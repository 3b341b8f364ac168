"""MuST-C (En-X): segment manifests with English transcripts and their translations.

    en-<tgt>/data/<split>/wav/ted_<talk>.wav           one recording per talk, 16 kHz
    en-<tgt>/data/<split>/txt/<split>.yaml             one segment per line: {duration, offset, speaker_id, wav}
    en-<tgt>/data/<split>/txt/<split>.en, .<tgt>       the transcript and translation of segment i on line i

Splits: train, dev, tst-COMMON, tst-HE. Segment ids follow fairseq's S2T preparation:
`<wav stem>_<i>`, i counting a talk's segments in the order of their offsets.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from asr.data import Utterance
from asr.data.manifest import ManifestError
from asr.datasets.corpus import (
    check_max_utts,
    find_corpus_dir,
    read_durations,
    read_lines,
    report_skipped,
    segment_duration,
    write_splits,
)

CORPUS = "mustc"
SPLITS = ("train", "dev", "tst-COMMON")


def prepare_mustc(
    out_dir: str | os.PathLike,
    root: str | os.PathLike,
    *,
    target_lang: str = "de",
    splits: tuple[str, ...] | list[str] = SPLITS,
    max_utts: int | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Write `{split}.jsonl` for each of `splits`; returns split -> manifest path.

    root: the `en-<target_lang>` folder, or the MuST-C folder holding it. Each utterance has the
    English transcript as `text` (lang "en") and the translation as `target_text`. max_utts: keep
    the first this many segments of each split (smoke runs).
    """
    check_max_utts(max_utts, CORPUS)
    folder = find_corpus_dir(root, ("", f"en-{target_lang}"), "data", CORPUS)
    result = {}
    for split in splits:
        split_dir = folder / "data" / split
        if not split_dir.is_dir():
            raise FileNotFoundError(f"{CORPUS}: split folder {split_dir} not found")
        result[split] = _read_split(split_dir, split, target_lang, max_utts, progress)
    return write_splits(out_dir, result, CORPUS)


def read_segments(path: Path) -> list[tuple[int, str, float, float, str | None]]:
    """(line, wav, offset, duration, speaker_id) for each entry of a MuST-C segment yaml.

    The official files hold one flow mapping per line, which is read directly: PyYAML takes about a
    minute for the 230k lines of train.yaml. Any other layout goes through the YAML parser, composed
    rather than loaded so that errors can still name the line of the bad entry.
    """
    lines = read_lines(path)
    entries = _read_flow_lines(lines)
    if entries is None:
        entries = _compose_entries(path, "\n".join(lines))
    segments = []
    for line, entry in entries:
        where = f"{path}:{line}"
        missing = [k for k in ("wav", "offset", "duration") if not entry.get(k)]
        if missing:
            raise ManifestError(f"{where}: segment lacks {', '.join(missing)}")
        times = []
        for name in ("offset", "duration"):
            try:
                times.append(float(entry[name]))
            except ValueError:
                raise ManifestError(f"{where}: field {name!r}: expected seconds, got {entry[name]!r}") from None
        segments.append((line, entry["wav"], times[0], times[1], entry.get("speaker_id")))
    return segments


# One segment per line: "- {duration: 3.500000, offset: 16.730000, speaker_id: spk.767, wav: ted_767.wav}".
_FLOW_LINE = re.compile(r"^- \{([^{}\[\]'\"#]*)\}\s*$")
_PLAIN = re.compile(r"^[\w.\-]+$")


def _read_flow_lines(lines: list[str]) -> list[tuple[int, dict[str, str]]] | None:
    """(line, key -> value) per line when every line is one flow mapping of plain scalars, else None."""
    entries = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        match = _FLOW_LINE.match(line)
        if match is None:
            return None
        entry = {}
        for pair in match[1].split(","):
            key, colon, value = (part.strip() for part in pair.partition(":"))
            if not colon or not _PLAIN.match(key) or not _PLAIN.match(value):
                return None
            entry[key] = value
        entries.append((lineno, entry))
    return entries


def _compose_entries(path: Path, text: str) -> list[tuple[int, dict[str, str]]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        node = yaml.compose(text, Loader=loader)
    except yaml.YAMLError as error:
        raise ManifestError(f"{path}: not valid YAML: {error}") from None
    if node is None:
        return []
    if not isinstance(node, yaml.SequenceNode):
        raise ManifestError(f"{path}:{node.start_mark.line + 1}: expected a list of segments")
    entries = []
    for item in node.value:
        if not isinstance(item, yaml.MappingNode):
            raise ManifestError(f"{path}:{item.start_mark.line + 1}: expected a segment "
                                "{duration, offset, speaker_id, wav}")
        entries.append((item.start_mark.line + 1, {key.value: value.value for key, value in item.value
                                                   if isinstance(value, yaml.ScalarNode)}))
    return entries


def _read_split(split_dir: Path, split: str, target_lang: str, max_utts: int | None,
                progress: bool) -> list[Utterance]:
    txt = split_dir / "txt"
    yaml_path = txt / f"{split}.yaml"
    if not yaml_path.is_file():
        raise FileNotFoundError(f"{CORPUS}: segment file {yaml_path} not found")
    segments = read_segments(yaml_path)
    texts = {}
    for lang in ("en", target_lang):
        path = txt / f"{split}.{lang}"
        if not path.is_file():
            raise FileNotFoundError(f"{CORPUS}: text file {path} not found")
        texts[lang] = read_lines(path)
        if len(texts[lang]) != len(segments):
            raise ManifestError(f"{path}: {len(texts[lang])} lines, but {yaml_path} lists {len(segments)} segments; "
                                "line i must hold the text of segment i")
    # Segment index within its talk, in offset order (as fairseq numbers them).
    by_wav: dict[str, list[int]] = {}
    for i, (_, wav, _, _, _) in enumerate(segments):
        by_wav.setdefault(wav, []).append(i)
    ids = {}
    for wav, indices in by_wav.items():
        for n, i in enumerate(sorted(indices, key=lambda i: segments[i][2])):
            ids[i] = f"{Path(wav).stem}_{n}"
    chosen = list(range(len(segments)))[:max_utts]
    skipped: list[str] = []
    recordings = read_durations(sorted({split_dir / "wav" / segments[i][1] for i in chosen}), skipped,
                                desc=f"{CORPUS} {split}", progress=progress)
    utterances = []
    for i in chosen:
        line, wav, offset, seconds, speaker = segments[i]
        where = f"{yaml_path}:{line}"
        audio = split_dir / "wav" / wav
        source, target = " ".join(texts["en"][i].split()), " ".join(texts[target_lang][i].split())
        if audio not in recordings:
            continue  # reported when its header could not be read
        duration = segment_duration(offset, offset + seconds, recordings[audio])
        if duration is None:
            skipped.append(f"{where}: segment {offset}+{seconds} s is empty or outside {wav} "
                           f"({recordings[audio]:.2f} s)")
        elif not source or not target:
            skipped.append(f"{where}: segment {ids[i]} has an empty transcript or translation")
        else:
            utterances.append(Utterance(id=ids[i], audio=str(audio.resolve()), duration=duration, text=source,
                                        offset=offset, speaker=speaker, lang="en", target_text=target,
                                        target_lang=target_lang))
    report_skipped(CORPUS, split, skipped)
    return utterances
