"""Whisper-tiny on CPU threads: openai-whisper vs transformers vs asr (vs CTranslate2), same random weights.

One random Whisper-tiny (d_model 384, 4 + 4 layers, 6 heads, the 51,865-token multilingual
vocabulary) is built by openai-whisper (token embedding std 0.02, decoder positions std 0.5, so the
output depends on the audio), converted to transformers' WhisperForConditionalGeneration by renaming
its parameters, imported into asr with asr.pretrained.import_whisper, and converted to CTranslate2
when ctranslate2 is installed and converts it. Input: the first 30 s of a real recording
(FLEURS de-009). Every decoder emits exactly --tokens tokens after <|startoftranscript|><|en|>
<|transcribe|><|notimestamps|> (<|endoftext|> suppressed, openai-whisper's default suppressions).

Rows: openai-whisper and transformers in float32 (openai-whisper has no lower precision on CPUs);
CTranslate2 in float32 and int8 (its CPU quantization); asr in float32 (the exact one: its tokens
are openai-whisper's) and bfloat16 (asr.load_model(..., dtype="bfloat16"), fast where the CPU has
bfloat16 matrix units (AMX, AVX512-BF16), slow where it has not).
encoder_ms: the encoder on the 30 s log-mel; greedy_ms / beam5_ms: decoding alone, from the encoder
output. Each figure is the median of --repeats rounds, each of which runs every implementation once
(after a warm-up of each), so that a slow spell of a shared machine hits them all. The ratios are the other
implementations' times over ours (> 1: asr is faster). tokens_equal: the tokens equal openai-whisper's
(for beam 5: our best hypothesis ranked without the forced final <|endoftext|>, as whisper ranks);
tokens_agreed: how many first tokens do. A random model's next-token distributions are nearly flat,
so reduced precision changes its tokens early; see the note in README.md for a trained model.
Usage: python bench/whisper_compare.py [--threads 2] [--repeats 5] [--tokens 100] [--data ../shared]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

import asr  # noqa: E402
from asr.audio import load_audio  # noqa: E402
from asr.decode import DecodeOptions  # noqa: E402
from asr.decode.scorers import SearchContext, build_scorers  # noqa: E402
from asr.decode.search import beam_search  # noqa: E402
from asr.pretrained import import_whisper  # noqa: E402

DIMS = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 384, "n_audio_head": 6, "n_audio_layer": 4,
        "n_vocab": 51865, "n_text_ctx": 448, "n_text_state": 384, "n_text_head": 6, "n_text_layer": 4}
# openai-whisper parameter names -> transformers'.
TO_HF = [
    (r"encoder\.conv([12])\.", r"model.encoder.conv\1."),
    (r"encoder\.positional_embedding", "model.encoder.embed_positions.weight"),
    (r"decoder\.positional_embedding", "model.decoder.embed_positions.weight"),
    (r"decoder\.token_embedding\.weight", "model.decoder.embed_tokens.weight"),
    (r"encoder\.ln_post\.", "model.encoder.layer_norm."),
    (r"decoder\.ln\.", "model.decoder.layer_norm."),
    (r"(encoder|decoder)\.blocks\.(\d+)\.attn\.query\.", r"model.\1.layers.\2.self_attn.q_proj."),
    (r"(encoder|decoder)\.blocks\.(\d+)\.attn\.key\.", r"model.\1.layers.\2.self_attn.k_proj."),
    (r"(encoder|decoder)\.blocks\.(\d+)\.attn\.value\.", r"model.\1.layers.\2.self_attn.v_proj."),
    (r"(encoder|decoder)\.blocks\.(\d+)\.attn\.out\.", r"model.\1.layers.\2.self_attn.out_proj."),
    (r"(encoder|decoder)\.blocks\.(\d+)\.attn_ln\.", r"model.\1.layers.\2.self_attn_layer_norm."),
    (r"decoder\.blocks\.(\d+)\.cross_attn\.query\.", r"model.decoder.layers.\1.encoder_attn.q_proj."),
    (r"decoder\.blocks\.(\d+)\.cross_attn\.key\.", r"model.decoder.layers.\1.encoder_attn.k_proj."),
    (r"decoder\.blocks\.(\d+)\.cross_attn\.value\.", r"model.decoder.layers.\1.encoder_attn.v_proj."),
    (r"decoder\.blocks\.(\d+)\.cross_attn\.out\.", r"model.decoder.layers.\1.encoder_attn.out_proj."),
    (r"decoder\.blocks\.(\d+)\.cross_attn_ln\.", r"model.decoder.layers.\1.encoder_attn_layer_norm."),
    (r"(encoder|decoder)\.blocks\.(\d+)\.mlp\.0\.", r"model.\1.layers.\2.fc1."),
    (r"(encoder|decoder)\.blocks\.(\d+)\.mlp\.2\.", r"model.\1.layers.\2.fc2."),
    (r"(encoder|decoder)\.blocks\.(\d+)\.mlp_ln\.", r"model.\1.layers.\2.final_layer_norm."),
]


OTHERS = ("openai", "transformers", "ctranslate2", "ctranslate2_int8")
OURS = ("asr", "asr_bf16")
IMPLS = OTHERS + OURS


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many first tokens of a and b are equal."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def interleaved_medians(jobs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median ms of each job over `repeats` rounds that run every job once, after a warm-up of each.

    Interleaving spreads a slow spell of the machine (other tenants' memory traffic) over all
    implementations instead of one, which keeps the ratios fair.
    """
    for fn in jobs.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, fn in jobs.items():
            start = time.perf_counter()
            fn()
            times[name].append(1000 * (time.perf_counter() - start))
    for name, values in times.items():
        print(f"  {name}: {[round(t, 1) for t in values]} ms", file=sys.stderr, flush=True)
    return {f"{name}_ms": statistics.median(values) for name, values in times.items()}


def build_openai(folder: Path):
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    model = Whisper(ModelDimensions(**DIMS)).eval()
    with torch.no_grad():
        model.decoder.token_embedding.weight.normal_(0.0, 0.02)
        model.decoder.positional_embedding.normal_(0.0, 0.5)
    torch.save({"dims": DIMS, "model_state_dict": model.state_dict()}, folder / "tiny.pt")
    return model


def build_transformers(openai_model, folder: Path):
    import transformers

    config = transformers.WhisperConfig(
        vocab_size=DIMS["n_vocab"], num_mel_bins=80, d_model=384, encoder_layers=4, decoder_layers=4,
        encoder_attention_heads=6, decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536,
        decoder_start_token_id=50258, eos_token_id=50257, pad_token_id=50257, bos_token_id=50257)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    state = {}
    for name, tensor in openai_model.state_dict().items():
        for pattern, replacement in TO_HF:
            if re.match(pattern, name):
                state[re.sub(pattern, replacement, name, count=1)] = tensor
                break
        else:
            raise KeyError(f"no transformers name for {name}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if m != "proj_out.weight"]:
        raise RuntimeError(f"transformers conversion: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.save_pretrained(folder / "hf")
    return model


def convert_ctranslate2(folder: Path) -> Path:
    """The transformers directory converted to CTranslate2 (float32 weights; it needs a real
    tokenizer.json there). The model quantizes them when loaded with another compute_type."""
    import ctranslate2
    import transformers
    from transformers.convert_slow_tokenizer import TikTokenConverter
    from whisper.tokenizer import get_encoding

    encoding = get_encoding("multilingual")
    specials = [t for t, _ in sorted(encoding._special_tokens.items(), key=lambda kv: kv[1])]
    vocab_file = Path(__import__("whisper").__file__).parent / "assets" / "multilingual.tiktoken"
    try:
        converter = TikTokenConverter(vocab_file=str(vocab_file), pattern=encoding._pat_str,
                                      extra_special_tokens=specials)
    except TypeError:  # transformers 4
        converter = TikTokenConverter(vocab_file=str(vocab_file), pattern=encoding._pat_str,
                                      additional_special_tokens=specials)
    tokenizer = transformers.WhisperTokenizerFast(tokenizer_object=converter.converted())
    tokenizer.save_pretrained(folder / "hf")
    transformers.WhisperFeatureExtractor().save_pretrained(folder / "hf")
    converter = ctranslate2.converters.TransformersConverter(
        str(folder / "hf"), copy_files=["tokenizer.json", "preprocessor_config.json"])
    return Path(converter.convert(str(folder / "ct2"), quantization="float32", force=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="whisper_compare.") as folder:  # ~0.5 GB of converted models
        compare(args, Path(folder))


def compare(args: argparse.Namespace, folder: Path) -> None:
    import whisper

    openai_model = build_openai(folder)
    hf_model = build_transformers(openai_model, folder)
    speech = asr.load_model(import_whisper(folder / "tiny.pt", folder / "asr"))
    tokenizer = speech.tokenizer
    wave = load_audio(args.data / "data" / "real" / "fleurs" / "fleurs-de-009.ogg", 16000)[: 30 * 16000]
    feats, lengths = speech.features(wave[None], torch.tensor([len(wave)]))
    mel = feats.transpose(1, 2).contiguous()
    n = args.tokens
    prompt = [tokenizer.sos_id, tokenizer.specials["<|en|>"], tokenizer.specials["<|transcribe|>"],
              tokenizer.specials["<|notimestamps|>"]]
    figures: dict[str, object] = {"threads": args.threads, "tokens": n, "repeats": args.repeats,
                                  "params_m": round(sum(p.numel() for p in openai_model.parameters()) / 1e6, 1)}
    tokens: dict[str, list[int]] = {}
    jobs: dict[str, Callable[[], object]] = {}  # timed together at the end: interleaved_medians

    with torch.no_grad():
        # openai-whisper: DecodingTask skips the encoder when given encoded audio features.
        audio_features = openai_model.encoder(mel)
        fixed = {"language": "en", "sample_len": n, "suppress_tokens": "-1,50257", "without_timestamps": True,
                 "fp16": False}
        jobs["openai_encoder"] = lambda: openai_model.encoder(mel)
        for name, beam in (("greedy", None), ("beam5", 5)):
            options = whisper.DecodingOptions(beam_size=beam, **fixed)
            jobs[f"openai_{name}"] = lambda o=options: whisper.decode(openai_model, audio_features[0], o)
            tokens[f"openai_{name}"] = jobs[f"openai_{name}"]().tokens

        # transformers: GenerationMixin.generate from the encoder output (WhisperForConditionalGeneration's own
        # generate, a wrapper for long-form audio, fails on encoder_outputs in transformers 5).
        import transformers
        from transformers.modeling_outputs import BaseModelOutput

        encoder_out = hf_model.model.encoder(mel)
        generation = {"decoder_input_ids": torch.tensor([prompt]), "min_new_tokens": n, "max_new_tokens": n,
                      "do_sample": False, "suppress_tokens": sorted(tokenizer.suppressed_ids),
                      "begin_suppress_tokens": sorted(tokenizer.initial_suppressed_ids)}
        jobs["transformers_encoder"] = lambda: hf_model.model.encoder(mel)
        for name, beam in (("greedy", 1), ("beam5", 5)):
            def generate(b=beam):
                # A fresh wrapper per call: generate expands encoder_outputs for the beams in place, so a
                # reused one grows 5x per call (and so does the time, until memory runs out).
                fresh = BaseModelOutput(last_hidden_state=encoder_out.last_hidden_state)
                return transformers.GenerationMixin.generate(hf_model, encoder_outputs=fresh, num_beams=b,
                                                             **generation)
            jobs[f"transformers_{name}"] = generate
            tokens[f"transformers_{name}"] = generate()[0].tolist()[-n:]

        # asr: the search from the encoder output (what asr.decode.decode does after encoding), in float32
        # (exact: the parity tests) and in bfloat16 (SpeechModel.to(dtype=...); fast on CPUs with AMX).
        prefix = torch.tensor([prompt[1:]])
        for impl, dtype in (("asr", "float32"), ("asr_bf16", "bfloat16")):
            model = asr.load_model(folder / "asr", dtype=dtype).model
            enc, enc_lengths = model.encode(feats, lengths)
            jobs[f"{impl}_encoder"] = lambda m=model: m.encode(feats, lengths)
            for name, beam in (("greedy", 1), ("beam5", 5)):
                options = DecodeOptions(beam_size=beam, nbest=beam, ctc_weight=0.0, min_len=n, max_len=n)

                def search(o=options, m=model, e=enc, e_lengths=enc_lengths):
                    context = SearchContext(m, e, e_lengths, o.beam_size, prefix, None, tokenizer.sos_id,
                                            tokenizer.eos_id)
                    return beam_search(build_scorers(context, o), torch.tensor([n]), o, tokenizer.vocab_size,
                                       sorted(tokenizer.suppressed_ids), eos_id=tokenizer.eos_id,
                                       initial_blocked=sorted(tokenizer.initial_suppressed_ids))
                jobs[f"{impl}_{name}"] = search
                result = search().results(tokenizer)[0]
                best = max(result.nbest, key=lambda h: sum(h.token_logprobs[:-1]))
                tokens[f"{impl}_{name}"] = list(best.tokens)

    try:
        import ctranslate2

        converted = convert_ctranslate2(folder)
        features = ctranslate2.StorageView.from_array(mel.numpy())
        # int8: CTranslate2's reduced precision on CPUs (as faster-whisper users run it); it has no
        # bfloat16 on CPUs.
        for impl, compute_type in (("ctranslate2", "float32"), ("ctranslate2_int8", "int8")):
            ct2 = ctranslate2.models.Whisper(str(converted), device="cpu", compute_type=compute_type,
                                             intra_threads=args.threads)
            ct2_encoded = ct2.encode(features)
            jobs[f"{impl}_encoder"] = lambda c=ct2: c.encode(features)
            for name, beam in (("greedy", 1), ("beam5", 5)):
                # CTranslate2's Whisper halves max_length: 2n gives n tokens.
                def run(b=beam, c=ct2, e=ct2_encoded):
                    return c.generate(e, [prompt], beam_size=b, max_length=2 * n, suppress_tokens=[-1, 50257])
                jobs[f"{impl}_{name}"] = run
                tokens[f"{impl}_{name}"] = run()[0].sequences_ids[0]
    except Exception as error:  # optional: not installed, or it does not convert this model
        figures["ctranslate2"] = f"skipped: {type(error).__name__}: {error}"[:200]

    with torch.no_grad():
        figures |= interleaved_medians(jobs, args.repeats)

    for name in ("greedy", "beam5"):
        reference = tokens[f"openai_{name}"]
        assert len(reference) == n, f"openai-whisper emitted {len(reference)} tokens, not {n}"
        for impl in IMPLS[1:]:
            if f"{impl}_{name}" in tokens:
                figures[f"{impl}_{name}_tokens_equal"] = tokens[f"{impl}_{name}"] == reference
                figures[f"{impl}_{name}_tokens_agreed"] = common_prefix(tokens[f"{impl}_{name}"], reference)
        for asr_impl in OURS:
            for other in OTHERS:
                if f"{other}_{name}_ms" in figures:
                    figures[f"{other}_over_{asr_impl}_{name}"] = (figures[f"{other}_{name}_ms"]
                                                                 / figures[f"{asr_impl}_{name}_ms"])
    for other in OTHERS:
        if f"{other}_encoder_ms" in figures:
            figures[f"{other}_over_asr_encoder"] = figures[f"{other}_encoder_ms"] / figures["asr_encoder_ms"]

    print(f"random Whisper-tiny ({figures['params_m']} M params), {args.threads} threads, 30 s of audio, "
          f"{n} tokens, median of {args.repeats}")
    print(f"{'':18s}{'encoder ms':>12s}{'greedy ms':>12s}{'beam 5 ms':>12s}   tokens equal to openai-whisper's "
          "(how many first ones agree)")
    for impl in IMPLS:
        if f"{impl}_encoder_ms" in figures:
            same = [f"{figures[f'{impl}_{k}_tokens_equal']} ({figures[f'{impl}_{k}_tokens_agreed']})"
                    for k in ("greedy", "beam5")] if impl != "openai" else []
            print(f"{impl:18s}" + "".join(f"{figures[f'{impl}_{k}_ms']:12.1f}" for k in ("encoder", "greedy", "beam5"))
                  + "   " + " / ".join(same))
    for asr_impl in OURS:
        print(f"beam 5, {asr_impl} is faster than: " + ", ".join(
            f"{other} {figures[f'{other}_over_{asr_impl}_beam5']:.2f}x" for other in OTHERS
            if f"{other}_over_{asr_impl}_beam5" in figures))
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
