"""The synth corpus's text and signal parts: number words, lexicon, parallel EN/DE grammar, splits, augmentation."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import numpy as np
import pytest

from asr.datasets import PATTERNS, AugmentConfig, generate_pairs, sentence_split, split_pairs
from asr.datasets.augment import add_noise, augment, colored_noise, reverberate, synthetic_rir
from asr.datasets.synth_grammar import iter_pairs, vocabulary
from asr.datasets.synth_lexicon import ROOMS, Noun
from asr.datasets.synth_numbers import (
    Clock,
    de_number,
    de_ordinal,
    duration,
    en_number,
    en_ordinal,
    random_clock,
    random_duration,
)

# --- numbers and the grammar -----------------------------------------------------------------


def test_number_words():
    assert [de_number(n) for n in (0, 1, 16, 21, 45, 70, 99)] == [
        "null", "eins", "sechzehn", "einundzwanzig", "fünfundvierzig", "siebzig", "neunundneunzig",
    ]  # fmt: skip
    assert de_number(101) == "hunderteins" and de_number(245) == "zweihundertfünfundvierzig"
    assert en_number(21) == "twenty one" and en_number(300) == "three hundred"
    assert en_number(245) == "two hundred and forty five"
    assert [en_ordinal(n) for n in (1, 3, 20, 21, 30, 31)] == [
        "first", "third", "twentieth", "twenty first", "thirtieth", "thirty first",
    ]  # fmt: skip
    assert [de_ordinal(n, "e") for n in (1, 3, 7, 8, 19, 20, 31)] == [
        "erste", "dritte", "siebte", "achte", "neunzehnte", "zwanzigste", "einunddreißigste",
    ]  # fmt: skip
    assert de_ordinal(21, "en") == "einundzwanzigsten"
    for fn, bad in ((en_number, 1000), (de_number, -1), (en_ordinal, 32), (lambda n: de_ordinal(n, "e"), 0)):
        with pytest.raises(ValueError, match="outside"):
            fn(bad)


def test_clock_times_and_durations():
    cases = [
        (Clock(7, 0, "hour"), "seven", "sieben Uhr"),
        (Clock(1, 0, "oclock", "evening"), "one o'clock in the evening", "ein Uhr abends"),
        (Clock(7, 30, "analog"), "half past seven", "halb acht"),
        (Clock(12, 30, "analog", "night"), "half past twelve at night", "halb eins nachts"),
        (Clock(8, 45, "analog"), "quarter to nine", "Viertel vor neun"),
        (Clock(1, 15, "analog"), "quarter past one", "Viertel nach eins"),
        (Clock(6, 50, "analog"), "ten to seven", "zehn vor sieben"),
        (Clock(9, 5, "digital", "morning"), "nine oh five in the morning", "neun Uhr fünf morgens"),
        (Clock(1, 21, "digital"), "one twenty one", "ein Uhr einundzwanzig"),
    ]
    for clock, en, de in cases:
        assert (clock.en(), clock.de()) == (en, de)
    assert duration(45, "minute").en == "forty five minutes" and duration(45, "minute").de == "fünfundvierzig Minuten"
    one_hour = duration(1, "hour")
    assert (one_hour.en, one_hour.de, one_hour.de_dat) == ("one hour", "eine Stunde", "einer Stunde")
    rng = random.Random(0)
    assert all(random_clock(rng, with_part=False).part == "" for _ in range(50))
    assert len({random_duration(rng).en for _ in range(200)}) > 50


def test_german_noun_phrases_agree():
    tv, lamp, light = Noun("television", "Fernseher", "m"), Noun("lamp", "Lampe", "f"), Noun("light", "Licht", "n")
    assert [n.de_phrase("def", "acc") for n in (tv, lamp, light)] == ["den Fernseher", "die Lampe", "das Licht"]
    assert [n.de_phrase("indef", "acc") for n in (tv, lamp, light)] == ["einen Fernseher", "eine Lampe", "ein Licht"]
    assert [n.de_phrase("my", "dat") for n in (tv, lamp, light)] == ["meinem Fernseher", "meiner Lampe", "meinem Licht"]
    assert Noun("neighbor", "Nachbar", "m", de_oblique="Nachbarn").de_phrase("my", "acc") == "meinen Nachbarn"
    locations = {room.noun.en: (room.en_location(), room.de_location()) for room in ROOMS}
    assert locations["living room"] == ("in the living room", "im Wohnzimmer")
    assert locations["kitchen"] == ("in the kitchen", "in der Küche")
    assert locations["balcony"] == ("on the balcony", "auf dem Balkon")
    assert Noun("alarm", "Wecker", "m", "an").en_indef() == "an alarm"
    with pytest.raises(ValueError, match="gender must be one of"):
        Noun("thing", "Ding", "x")


def test_grammar_size_and_text_conventions():
    pairs = generate_pairs(3000, seed=0)
    assert len(PATTERNS) >= 15
    assert {p.pattern for p in pairs} == set(PATTERNS)
    assert len(vocabulary(pairs, "en")) >= 300
    assert len({p.en for p in pairs}) == len(pairs)  # distinct
    for pair in pairs:
        assert re.fullmatch(r"[a-z']+( [a-z']+)*", pair.en), pair.en  # what eSpeak says, spelled out
        assert re.fullmatch(r"\S+( \S+)*", pair.de) and not re.search(r"[0-9.?!]", pair.de), pair.de
    german = vocabulary(pairs, "de")
    assert {"Wecker", "Küche", "Wohnzimmer", "einundzwanzig"} <= german  # capitalised nouns, number words
    assert all(ch in "".join(german) for ch in "äöüß")
    with pytest.raises(ValueError, match="side must be"):
        vocabulary(pairs, "fr")


def test_grammar_is_deterministic():
    assert generate_pairs(300, seed=7) == generate_pairs(300, seed=7)
    assert generate_pairs(300, seed=7) != generate_pairs(300, seed=8)
    assert generate_pairs(50, seed=7) == generate_pairs(300, seed=7)[:50]
    stream = iter_pairs(7)
    assert [next(stream) for _ in range(5)] == generate_pairs(5, seed=7)
    with pytest.raises(ValueError, match="n must be >= 0"):
        generate_pairs(-1)


def _find(pattern: str, accept: Callable[[str], bool], tries: int = 200_000) -> tuple[str, str]:
    """The first (en, de) the pattern makes, over seeded draws, whose English `accept`s."""
    rng = random.Random(0)
    for _ in range(tries):
        en, de = PATTERNS[pattern](rng)
        if accept(en):
            return en, de
    raise AssertionError(f"pattern {pattern} made no matching sentence in {tries} draws")


@pytest.mark.parametrize(
    ("pattern", "en", "de"),
    [
        ("device_switch", "turn on the light", "schalte das Licht ein"),  # separable verb
        ("device_switch", "turn the television in the living room off", "schalte den Fernseher im Wohnzimmer aus"),
        ("device_state", "is the television still on", "ist der Fernseher noch an"),  # nominative
        ("wake_up", "wake me up at seven", "weck mich um sieben Uhr auf"),
        ("wake_up", "wake me up at half past seven", "weck mich um halb acht auf"),
        ("event_fronted", "tomorrow i have a meeting", "morgen habe ich ein Meeting"),  # verb second
        ("event_fronted", "tomorrow i have a dentist appointment", "morgen habe ich einen Zahnarzttermin"),
        ("timer_set", "set a timer for forty five minutes", "stell einen Timer auf fünfundvierzig Minuten"),
        ("tell_that", "tell my mother that i'm on my way", "sag meiner Mutter, dass ich unterwegs bin"),
        ("weather_forecast", "what's the weather like in munich tomorrow", "wie wird das Wetter morgen in München"),
        ("visit", "next week my father is visiting us", "nächste Woche besucht uns mein Vater"),
        ("shopping_add", "add a liter of milk to my shopping list", "setz einen Liter Milch auf meine Einkaufsliste"),
        ("date_question", "what day of the week is the third of may", "welcher Wochentag ist der dritte Mai"),
    ],
)
def test_exact_translations(pattern: str, en: str, de: str):
    assert _find(pattern, lambda s: s == en) == (en, de)


def test_translations_reorder_and_agree():
    # Modal verb: the infinitive goes to the end, the separable prefix stays on it.
    en, de = _find("need_to", lambda s: s.startswith("on monday i need to call "))
    assert de.startswith("am Montag muss ich ") and de.endswith(" anrufen"), de
    # "zu" goes between the separable prefix and the stem.
    en, de = _find("remind", lambda s: s.startswith("remind me to call "))
    assert ", " in de and de.endswith(" anzurufen"), de
    en, de = _find("birthday", lambda s: s.startswith("my mother's birthday is on the twenty first of "))
    assert de.startswith("meine Mutter hat am einundzwanzigsten ") and de.endswith(" Geburtstag"), de
    en, de = _find("arithmetic", lambda s: s.startswith("what is twenty one "))
    assert de.startswith("was ist einundzwanzig "), de


def test_sentence_splits_are_disjoint_and_stable():
    parts = split_pairs({"train": 400, "dev": 30, "test": 40}, seed=3)
    assert {k: len(v) for k, v in parts.items()} == {"train": 400, "dev": 30, "test": 40}
    sets = {k: {p.en for p in v} for k, v in parts.items()}
    assert not sets["train"] & sets["test"] and not sets["train"] & sets["dev"] and not sets["dev"] & sets["test"]
    assert all(sentence_split(p.en) == split for split, pairs in parts.items() for p in pairs)
    # The test sentences of a seed do not depend on how much training data is asked for.
    assert split_pairs({"train": 5, "test": 40}, seed=3)["test"] == parts["test"]
    with pytest.raises(ValueError, match="unknown split 'eval'"):
        split_pairs({"eval": 3})
    with pytest.raises(ValueError, match="must be >= 0"):
        split_pairs({"train": -1})


# --- augmentation ----------------------------------------------------------------------------


def _tone(seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_noise_has_the_requested_snr_and_color():
    wave = _tone()
    noisy = add_noise(wave, np.random.default_rng(0), snr_db=10.0, color="white")
    snr = 10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean((noisy - wave).astype(np.float64) ** 2))
    assert noisy.dtype == np.float32 and abs(snr - 10.0) < 0.3
    pink = np.abs(np.fft.rfft(colored_noise(np.random.default_rng(1), 16000, "pink"))) ** 2
    assert pink[10:100].mean() > 10 * pink[5000:6000].mean()  # power falls with frequency
    assert np.array_equal(add_noise(np.zeros(10, np.float32), np.random.default_rng(0), 10.0), np.zeros(10))
    with pytest.raises(ValueError, match="unknown noise color 'blue'"):
        colored_noise(np.random.default_rng(0), 10, "blue")


def test_reverb_impulse_response_decays():
    rir = synthetic_rir(np.random.default_rng(0), 16000, rt60=0.5, drr_db=6.0)
    assert rir.size == 8000 and rir[0] == 1.0
    assert abs(10 * np.log10(1.0 / np.sum(rir[1:] ** 2)) - 6.0) < 1e-6  # direct-to-reverberant ratio
    assert np.sum(rir[1:800] ** 2) > 100 * np.sum(rir[-800:] ** 2)
    impulse = np.zeros(1000, np.float32)
    impulse[0] = 1.0
    assert np.allclose(reverberate(impulse, rir[:500]), np.pad(rir[:500], (0, 500)), atol=1e-6)


def test_augment_is_deterministic_and_bounded():
    wave = _tone()
    config = AugmentConfig(noise=True, reverb=True, snr_db=(0.0, 5.0))
    a = augment(wave, 16000, config, np.random.default_rng(5))
    b = augment(wave, 16000, config, np.random.default_rng(5))
    c = augment(wave, 16000, config, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == wave.shape and np.abs(a).max() <= 0.99 + 1e-6
    assert np.array_equal(augment(wave, 16000, AugmentConfig(), np.random.default_rng(5)), wave)
    assert not AugmentConfig().enabled and config.enabled
    with pytest.raises(ValueError, match="snr_db: range"):
        AugmentConfig(snr_db=(20.0, 10.0))
    with pytest.raises(ValueError, match="rt60 must be > 0"):
        AugmentConfig(rt60=(0.0, 0.5))
    with pytest.raises(ValueError, match="noise_colors"):
        AugmentConfig(noise_colors=("blue",))
