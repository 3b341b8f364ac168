"""Scoring hypotheses against references: transcript files, WER/CER with sclite-style alignments,
BLEU/chrF for translation, and the results files of the recipes' decode/score stages.

Transcript files are either Kaldi-style text (`utt_id text` per line; a line with only an id is
an empty transcript) or JSON Lines manifests (an `id` and a `text` field per line). Texts go
through the same TextNormalizer as training targets before scoring, so that WER measures what
the model was trained to produce.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jiwer

from asr.fileio import atomic_write_text, write_json
from asr.metrics import ErrorRate, error_rate
from asr.text.normalize import TextNormalizer

MAX_LISTED = 20  # ids an error message lists before it only counts the rest
# wer and cer score the same alignments; cer ranks by characters (for text without word spaces).
METRICS = ("wer", "cer", "bleu")


class ScoringError(ValueError):
    """Unreadable transcript files or references and hypotheses that do not match; names file and line."""


# --- reading transcripts ----------------------------------------------------------------------------


def read_transcripts(path: str | os.PathLike, *, field: str = "text") -> dict[str, str]:
    """id -> text from a Kaldi-style text file or a JSON Lines manifest (using `field`), in file order.

    The format is JSON Lines when the file ends in .jsonl/.json or its first line starts with "{".
    Raises ScoringError naming the file and line for unreadable files, bad lines and duplicate ids.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ScoringError(f"{path}: no such file") from None
    except UnicodeDecodeError as error:
        raise ScoringError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise ScoringError(f"{path}: cannot read ({error.strerror})") from None
    first = next((line for line in lines if line.strip()), "")
    is_jsonl = path.suffix.lower() in (".jsonl", ".json") or first.lstrip().startswith("{")
    texts: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            utt_id, text = _parse_json_line(line, field) if is_jsonl else _parse_kaldi_line(line)
        except ValueError as error:
            raise ScoringError(f"{path}:{lineno}: {error}") from None
        if utt_id in texts:
            raise ScoringError(f"{path}:{lineno}: duplicate id {utt_id!r} (first at line {first_line[utt_id]})")
        texts[utt_id] = text
        first_line[utt_id] = lineno
    return texts


def _parse_kaldi_line(line: str) -> tuple[str, str]:
    """(id, text) of an `id text` line (any whitespace separates them; the text may be empty)."""
    utt_id, *text = line.split(maxsplit=1)
    return utt_id, " ".join(text[0].split()) if text else ""


def _parse_json_line(line: str, field: str) -> tuple[str, str]:
    """(id, text) of one JSON Lines record; ValueError says what is wrong with it."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    for name in ("id", field):
        if name not in record:
            raise ValueError(f"field {name!r}: missing (the line has {', '.join(map(repr, record)) or 'no fields'})")
        if not isinstance(record[name], str):
            raise ValueError(f"field {name!r}: expected a string, got {record[name]!r}")
    return record["id"], " ".join(record[field].split())


def pair_transcripts(refs: dict[str, str], hyps: dict[str, str], ref_name: str = "references",
                     hyp_name: str = "hypotheses") -> tuple[list[str], list[str], list[str]]:
    """(ids, ref texts, hyp texts) in reference order; raises ScoringError listing ids missing from
    either side."""
    if not refs:
        raise ScoringError(f"{ref_name}: no utterances")
    missing = [i for i in refs if i not in hyps]
    extra = [i for i in hyps if i not in refs]
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"{len(missing)} id(s) of {ref_name} are not in {hyp_name}: {_preview(missing)}")
        if extra:
            problems.append(f"{len(extra)} id(s) of {hyp_name} are not in {ref_name}: {_preview(extra)}")
        raise ScoringError("; ".join(problems))
    ids = list(refs)
    return ids, [refs[i] for i in ids], [hyps[i] for i in ids]


def _preview(ids: Sequence[str]) -> str:
    listed = ", ".join(ids[:MAX_LISTED])
    return listed + (f", ... ({len(ids) - MAX_LISTED} more)" if len(ids) > MAX_LISTED else "")


# --- word error rate with alignments ----------------------------------------------------------------

# One aligned position: (op, ref word, hyp word) with op "C" (correct), "S", "D" or "I".
Op = tuple[str, str | None, str | None]


def align_words(refs: Sequence[str], hyps: Sequence[str]) -> list[list[Op]]:
    """Word alignments (jiwer's minimum edit distance), one list of ops per utterance pair."""
    ref_words = [r.split() for r in refs]
    hyp_words = [h.split() for h in hyps]
    alignments: list[list[Op]] = [[("D", w, None) for w in r] + [("I", None, w) for w in h]
                                  for r, h in zip(ref_words, hyp_words)]
    both = [i for i, (r, h) in enumerate(zip(ref_words, hyp_words)) if r and h]  # the rest is all D or all I
    if both:
        output = jiwer.process_words([" ".join(ref_words[i]) for i in both], [" ".join(hyp_words[i]) for i in both])
        for i, chunks in zip(both, output.alignments):
            r, h = ref_words[i], hyp_words[i]
            ops: list[Op] = []
            for chunk in chunks:
                ref_part = r[chunk.ref_start_idx : chunk.ref_end_idx]
                hyp_part = h[chunk.hyp_start_idx : chunk.hyp_end_idx]
                if chunk.type == "equal":
                    ops += [("C", a, b) for a, b in zip(ref_part, hyp_part)]
                elif chunk.type == "substitute":
                    ops += [("S", a, b) for a, b in zip(ref_part, hyp_part)]
                elif chunk.type == "delete":
                    ops += [("D", a, None) for a in ref_part]
                else:
                    ops += [("I", None, b) for b in hyp_part]
            alignments[i] = ops
    return alignments


@dataclass(frozen=True)
class UtteranceScore:
    """One utterance's normalised texts and word alignment."""

    id: str
    ref: str
    hyp: str
    ops: tuple[Op, ...]

    def count(self, op: str) -> int:
        return sum(1 for o, _, _ in self.ops if o == op)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ref": self.ref, "hyp": self.hyp, "correct": self.count("C"),
                "substitutions": self.count("S"), "deletions": self.count("D"), "insertions": self.count("I")}

    def format(self) -> str:
        """sclite-style (`-o pra`) alignment: REF/HYP rows with *** for gaps and S/D/I marks under errors."""
        ref_row, hyp_row, mark_row = [], [], []
        for op, ref, hyp in self.ops:
            width = max(_width(ref or ""), _width(hyp or ""))
            ref_row.append(_pad(ref or "*" * width, width))
            hyp_row.append(_pad(hyp or "*" * width, width))
            mark_row.append(_pad("" if op == "C" else op, width))
        counts = " ".join(str(self.count(op)) for op in "CSDI")
        return (f"id: ({self.id})\nScores: (#C #S #D #I) {counts}\n"
                f"REF:  {' '.join(ref_row).rstrip()}\nHYP:  {' '.join(hyp_row).rstrip()}\n"
                f"Eval: {' '.join(mark_row).rstrip()}\n")


def _width(text: str) -> int:
    """Terminal columns: wide (CJK) characters take two, combining marks none."""
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


@dataclass(frozen=True)
class WerReport:
    """Corpus WER/CER (from asr.metrics.error_rate) and per-utterance alignments."""

    rates: ErrorRate
    utterances: tuple[UtteranceScore, ...]

    def confusions(self, top: int = 10) -> dict[str, list]:
        """The most frequent substitutions ({ref, hyp, count}), deletions and insertions ({word, count})."""
        subs: Counter[tuple[str, str]] = Counter()
        dels: Counter[str] = Counter()
        ins: Counter[str] = Counter()
        for utt in self.utterances:
            for op, ref, hyp in utt.ops:
                if op == "S":
                    subs[(ref, hyp)] += 1
                elif op == "D":
                    dels[ref] += 1
                elif op == "I":
                    ins[hyp] += 1
        return {"substitutions": [{"ref": r, "hyp": h, "count": n} for (r, h), n in subs.most_common(top)],
                "deletions": [{"word": w, "count": n} for w, n in dels.most_common(top)],
                "insertions": [{"word": w, "count": n} for w, n in ins.most_common(top)]}

    def to_dict(self, details: bool = False, top: int = 10) -> dict[str, Any]:
        out: dict[str, Any] = {"metric": "wer", **self.rates.to_dict(), "confusions": self.confusions(top)}
        if details:
            out["utterances"] = [u.to_dict() for u in self.utterances]
        return out

    def summary(self) -> str:
        """Kaldi compute-wer style lines: %WER, %CER, %SER."""
        r = self.rates
        return (f"%WER {100 * r.wer:.2f} [ {r.word_errors} / {r.ref_words}, {r.insertions} ins, "
                f"{r.deletions} del, {r.substitutions} sub ]\n"
                f"%CER {100 * r.cer:.2f} [ {r.char_errors} / {r.ref_chars}, {r.char_insertions} ins, "
                f"{r.char_deletions} del, {r.char_substitutions} sub ]\n"
                f"%SER {100 * r.sentence_error_rate:.2f} [ {round(r.sentence_error_rate * r.num_utts)} / "
                f"{r.num_utts} ]\nScored {r.num_utts} utterances.\n")

    def details(self, top: int = 10) -> str:
        """Every utterance's alignment, then the most frequent confusions."""
        lines = [u.format() for u in self.utterances]
        confusions = self.confusions(top)
        lines.append(f"Most frequent substitutions (ref ==> hyp), top {top}:")
        lines += [f"  {c['count']:6d}  {c['ref']} ==> {c['hyp']}" for c in confusions["substitutions"]] or ["  (none)"]
        for kind in ("deletions", "insertions"):
            lines.append(f"Most frequent {kind}, top {top}:")
            lines += [f"  {c['count']:6d}  {c['word']}" for c in confusions[kind]] or ["  (none)"]
        return "\n".join(lines) + "\n"


def score_wer(ids: Sequence[str], refs: Sequence[str], hyps: Sequence[str],
              normalizer: TextNormalizer | None = TextNormalizer()) -> WerReport:
    """WER, CER and SER of `hyps` against `refs` after `normalizer` (None: only whitespace is collapsed)."""
    norm = normalizer or (lambda text: " ".join(text.split()))
    refs = [norm(r) for r in refs]
    hyps = [norm(h) for h in hyps]
    alignments = align_words(refs, hyps)
    utterances = tuple(UtteranceScore(i, r, h, tuple(ops)) for i, r, h, ops in zip(ids, refs, hyps, alignments))
    return WerReport(error_rate(refs, hyps), utterances)


# --- translation ------------------------------------------------------------------------------------


def score_bleu(refs: Sequence[str], hyps: Sequence[str],
               normalizer: TextNormalizer | None = TextNormalizer()) -> dict[str, Any]:
    """Corpus BLEU and chrF (sacrebleu, one reference per segment), with their signatures.

    The normaliser is applied first (as for WER), because models trained on normalised targets
    produce normalised text; pass None to score the texts as they are.
    """
    from sacrebleu.metrics import BLEU, CHRF

    norm = normalizer or (lambda text: " ".join(text.split()))
    refs = [norm(r) for r in refs]
    hyps = [norm(h) for h in hyps]
    bleu, chrf = BLEU(), CHRF()
    bleu_score = bleu.corpus_score(hyps, [refs])
    chrf_score = chrf.corpus_score(hyps, [refs])
    return {"metric": "bleu", "bleu": bleu_score.score, "chrf": chrf_score.score, "num_utts": len(refs),
            "bleu_detail": str(bleu_score), "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature())}


# --- results files of the recipes --------------------------------------------------------------------


def write_results(directory: str | os.PathLike, ids: Sequence[str], refs: Sequence[str], hyps: Sequence[str], *,
                  metric: str = "wer", test_set: str | None = None, settings: dict[str, Any] | None = None,
                  normalizer: TextNormalizer | None = TextNormalizer()) -> dict[str, Any]:
    """Write <directory>/hyp.txt and ref.txt (Kaldi-style), then score them (see score_directory).

    settings: how the hypotheses were made (decoding options, model, checkpoint...), recorded in
    results.json and the RESULTS.md table. Returns the contents of results.json.
    """
    if not (len(ids) == len(refs) == len(hyps)):
        raise ValueError(f"write_results: {len(ids)} ids, {len(refs)} references, {len(hyps)} hypotheses")
    if len(set(ids)) != len(ids):
        duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise ValueError(f"write_results: duplicate ids: {_preview(duplicates)}")
    _check_metric(metric)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / "hyp.txt", format_kaldi(ids, hyps))
    atomic_write_text(directory / "ref.txt", format_kaldi(ids, refs))
    return score_directory(directory, metric=metric, test_set=test_set, settings=settings, normalizer=normalizer)


def score_directory(directory: str | os.PathLike, *, metric: str = "wer", test_set: str | None = None,
                    settings: dict[str, Any] | None = None,
                    normalizer: TextNormalizer | None = TextNormalizer()) -> dict[str, Any]:
    """Score <directory>/hyp.txt against <directory>/ref.txt; writes results.json and RESULTS.md there.

    test_set: the name in the results (default: the directory's name). Raises ScoringError for
    unreadable files and ids missing from either. Returns the contents of results.json.
    """
    _check_metric(metric)
    directory = Path(directory)
    ref_path, hyp_path = directory / "ref.txt", directory / "hyp.txt"
    ids, refs, hyps = pair_transcripts(read_transcripts(ref_path), read_transcripts(hyp_path), str(ref_path),
                                       str(hyp_path))
    if metric in ("wer", "cer"):
        scores = {**score_wer(ids, refs, hyps, normalizer).to_dict(), "metric": metric}
    else:
        scores = score_bleu(refs, hyps, normalizer)
    results = {"test_set": test_set or directory.name, **scores, "settings": dict(settings or {}),
               "normalizer": normalizer.to_dict() if normalizer else None}
    write_json(directory / "results.json", results)
    atomic_write_text(directory / "RESULTS.md", f"# Results: {results['test_set']}\n\n{results_table([results])}")
    return results


def score_experiment(exp_dir: str | os.PathLike, decode_dirs: dict[str, str | os.PathLike], *, metric: str = "wer",
                     settings: dict[str, Any] | None = None,
                     normalizer: TextNormalizer | None = TextNormalizer()) -> str:
    """The recipes' score stage: score_directory for each test set ({name: decode dir}), then one
    table of them all in <exp_dir>/RESULTS.md. Returns that table."""
    results = [score_directory(d, metric=metric, test_set=name, settings=settings, normalizer=normalizer)
               for name, d in decode_dirs.items()]
    table = results_table(results)
    atomic_write_text(Path(exp_dir) / "RESULTS.md", f"# Results: {Path(exp_dir).name}\n\n{table}")
    return table


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")


def format_kaldi(ids: Sequence[str], texts: Sequence[str]) -> str:
    """Kaldi-style `id text` lines (texts on one line each)."""
    return "".join(f"{i} {' '.join(t.split())}".rstrip() + "\n" for i, t in zip(ids, texts))


def results_table(results: Sequence[dict[str, Any]]) -> str:
    """A Markdown table with one row per results.json dict (WER rows, then CER rows, then BLEU rows)."""
    blocks = []
    wer_rows = [r for r in results if r.get("metric") == "wer"]
    cer_rows = [r for r in results if r.get("metric") == "cer"]
    bleu_rows = [r for r in results if r.get("metric") == "bleu"]
    if wer_rows:
        lines = ["| test set | utts | WER % | CER % | sub | del | ins | SER % | settings |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        lines += [f"| {r['test_set']} | {r['num_utts']} | {100 * r['wer']:.2f} | {100 * r['cer']:.2f} | "
                  f"{r['substitutions']} | {r['deletions']} | {r['insertions']} | "
                  f"{100 * r['sentence_error_rate']:.2f} | {_settings(r)} |" for r in wer_rows]
        blocks.append("\n".join(lines) + "\n")
    if cer_rows:  # character-level substitutions, deletions and insertions
        lines = ["| test set | utts | CER % | WER % | sub | del | ins | SER % | settings |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        lines += [f"| {r['test_set']} | {r['num_utts']} | {100 * r['cer']:.2f} | {100 * r['wer']:.2f} | "
                  f"{r['char_substitutions']} | {r['char_deletions']} | {r['char_insertions']} | "
                  f"{100 * r['sentence_error_rate']:.2f} | {_settings(r)} |" for r in cer_rows]
        blocks.append("\n".join(lines) + "\n")
    if bleu_rows:
        lines = ["| test set | utts | BLEU | chrF | settings |", "|---|---:|---:|---:|---|"]
        lines += [f"| {r['test_set']} | {r['num_utts']} | {r['bleu']:.2f} | {r['chrf']:.2f} | {_settings(r)} |"
                  for r in bleu_rows]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _settings(result: dict[str, Any]) -> str:
    settings = result.get("settings") or {}
    text = ", ".join(f"{k}={v}" for k, v in settings.items())
    return text.replace("|", "\\|") or "-"
