"""Numbers, ordinals, clock times and durations written out in English and German.

The English side is read aloud by eSpeak, so every number is spelled as it is spoken ("twenty
one", "half past seven"); the German side writes numbers out the way German does, as one word
("einundzwanzig", "zweihundertfünfundvierzig") with the German clock conventions ("halb acht" is
half past seven, "Viertel vor neun" a quarter to nine).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

EN_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
EN_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
DE_ONES = (
    "null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn", "elf", "zwölf",
    "dreizehn", "vierzehn", "fünfzehn", "sechzehn", "siebzehn", "achtzehn", "neunzehn",
)  # fmt: skip
DE_TENS = ("", "", "zwanzig", "dreißig", "vierzig", "fünfzig", "sechzig", "siebzig", "achtzig", "neunzig")
EN_ORDINALS = (
    "", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh",
    "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth", "eighteenth", "nineteenth",
    "twentieth",
)  # fmt: skip
EN_ORDINAL_TENS = {20: "twentieth", 30: "thirtieth"}


def en_number(n: int) -> str:
    """0..999 as spoken English: 245 -> "two hundred and forty five"."""
    if not 0 <= n <= 999:
        raise ValueError(f"en_number: {n} is outside 0..999")
    if n >= 100:
        rest = n % 100
        head = f"{EN_ONES[n // 100]} hundred"
        return head if rest == 0 else f"{head} and {en_number(rest)}"
    if n < 20:
        return EN_ONES[n]
    tens, ones = divmod(n, 10)
    return EN_TENS[tens] if ones == 0 else f"{EN_TENS[tens]} {EN_ONES[ones]}"


def de_number(n: int) -> str:
    """0..999 as one German word: 21 -> "einundzwanzig", 101 -> "hunderteins", 1 -> "eins"."""
    if not 0 <= n <= 999:
        raise ValueError(f"de_number: {n} is outside 0..999")
    if n >= 100:
        hundreds, rest = divmod(n, 100)
        head = "hundert" if hundreds == 1 else f"{DE_ONES[hundreds]}hundert"
        return head if rest == 0 else head + de_number(rest)
    if n < 20:
        return DE_ONES[n]
    tens, ones = divmod(n, 10)
    if ones == 0:
        return DE_TENS[tens]
    # The units come first and "eins" loses its s inside a compound: einundzwanzig.
    unit = "ein" if ones == 1 else DE_ONES[ones]
    return f"{unit}und{DE_TENS[tens]}"


def en_ordinal(n: int) -> str:
    """1..31 as an English ordinal: 3 -> "third", 21 -> "twenty first"."""
    if not 1 <= n <= 31:
        raise ValueError(f"en_ordinal: {n} is outside 1..31")
    if n <= 20:
        return EN_ORDINALS[n]
    tens, ones = divmod(n, 10)
    return EN_ORDINAL_TENS[n] if ones == 0 else f"{EN_TENS[tens]} {EN_ORDINALS[ones]}"


def de_ordinal(n: int, ending: str) -> str:
    """1..31 as a German ordinal with an adjective ending: (3, "e") -> "dritte", (21, "en") -> "einundzwanzigsten".

    ending: "e" after a nominative definite article ("der dritte Mai"), "en" after "am"/"zum".
    """
    if not 1 <= n <= 31:
        raise ValueError(f"de_ordinal: {n} is outside 1..31")
    irregular = {1: "erst", 3: "dritt", 7: "siebt", 8: "acht"}
    # Up to nineteen the stem takes -t, from twenty on -st: vierte, neunzehnte, zwanzigste.
    stem = irregular.get(n) or (de_number(n) + ("t" if n < 20 else "st"))
    return stem + ending


# Hours on the 12-hour clock. German says "ein Uhr" but "halb eins", "Viertel nach eins".
def _de_hour_before_uhr(hour: int) -> str:
    return "ein" if hour == 1 else de_number(hour)


def _next_hour(hour: int) -> int:
    return hour % 12 + 1


@dataclass(frozen=True)
class Clock:
    """A time of day on the 12-hour clock, with the way it is said.

    style: "hour" ("seven" / "sieben Uhr"), "oclock" ("seven o'clock" / "sieben Uhr"),
        "digital" ("seven fifteen" / "sieben Uhr fünfzehn") or "analog" ("quarter past seven" /
        "Viertel nach sieben", "half past seven" / "halb acht").
    part: "", "morning", "afternoon", "evening" or "night" ("in the morning" / "morgens").
    """

    hour: int
    minute: int
    style: str
    part: str = ""

    def en(self) -> str:
        h, m = self.hour, self.minute
        if self.style == "hour":
            text = en_number(h)
        elif self.style == "oclock":
            text = f"{en_number(h)} o'clock"
        elif self.style == "digital":
            text = f"{en_number(h)} {'oh ' if m < 10 else ''}{en_number(m)}"
        elif m == 15:
            text = f"quarter past {en_number(h)}"
        elif m == 30:
            text = f"half past {en_number(h)}"
        elif m == 45:
            text = f"quarter to {en_number(_next_hour(h))}"
        elif m < 30:
            text = f"{en_number(m)} past {en_number(h)}"
        else:
            text = f"{en_number(60 - m)} to {en_number(_next_hour(h))}"
        return f"{text} {PARTS_OF_DAY[self.part][0]}".rstrip()

    def de(self) -> str:
        h, m = self.hour, self.minute
        if self.style in ("hour", "oclock"):
            text = f"{_de_hour_before_uhr(h)} Uhr"
        elif self.style == "digital":
            text = f"{_de_hour_before_uhr(h)} Uhr {de_number(m)}"
        elif m == 15:
            text = f"Viertel nach {de_number(h)}"
        elif m == 30:
            # German counts the half hour towards the next hour: half past seven is "halb acht".
            text = f"halb {de_number(_next_hour(h))}"
        elif m == 45:
            text = f"Viertel vor {de_number(_next_hour(h))}"
        elif m < 30:
            text = f"{de_number(m)} nach {de_number(h)}"
        else:
            text = f"{de_number(60 - m)} vor {de_number(_next_hour(h))}"
        return f"{text} {PARTS_OF_DAY[self.part][1]}".rstrip()


PARTS_OF_DAY = {
    "": ("", ""),
    "morning": ("in the morning", "morgens"),
    "afternoon": ("in the afternoon", "nachmittags"),
    "evening": ("in the evening", "abends"),
    "night": ("at night", "nachts"),
}
ANALOG_MINUTES = (5, 10, 15, 20, 30, 40, 45, 50, 55)


def random_clock(rng: random.Random, with_part: bool = True) -> Clock:
    """A clock time said in one of the four styles, sometimes with a part of the day.

    with_part: False where the sentence already names the part of the day ("tonight").
    """
    hour = rng.randint(1, 12)
    style = rng.choice(("hour", "hour", "oclock", "digital", "digital", "analog", "analog", "analog"))
    if style in ("hour", "oclock"):
        minute = 0
    elif style == "analog":
        minute = rng.choice(ANALOG_MINUTES)
    else:
        minute = rng.choice((rng.randint(1, 59), 15, 30, 45))
    part = rng.choice(("", "", "", "morning", "afternoon", "evening", "night")) if with_part else ""
    return Clock(hour, minute, style, part)


# Units of duration: English singular/plural, German singular/plural. All three are feminine in
# German, so "one" is "eine" ("eine Minute"), and "einer" after "in" ("in einer Stunde").
DURATION_UNITS = {
    "second": ("second", "seconds", "Sekunde", "Sekunden"),
    "minute": ("minute", "minutes", "Minute", "Minuten"),
    "hour": ("hour", "hours", "Stunde", "Stunden"),
}


@dataclass(frozen=True)
class Duration:
    """A length of time: English, German accusative ("auf eine Stunde") and dative ("in einer Stunde")."""

    en: str
    de: str
    de_dat: str


def duration(amount: int, unit: str) -> Duration:
    """An amount of a unit: (45, "minute") -> "forty five minutes" / "fünfundvierzig Minuten"."""
    en_sg, en_pl, de_sg, de_pl = DURATION_UNITS[unit]
    if amount == 1:
        return Duration(f"one {en_sg}", f"eine {de_sg}", f"einer {de_sg}")
    de = f"{de_number(amount)} {de_pl}"
    return Duration(f"{en_number(amount)} {en_pl}", de, de)


def random_duration(rng: random.Random) -> Duration:
    """A timer length: seconds, minutes, hours, half an hour, or hours and minutes."""
    kind = rng.choice(("minute", "minute", "minute", "second", "hour", "half", "mixed"))
    if kind == "second":
        return duration(rng.choice((10, 15, 20, 30, 40, 45, 50, 90)), "second")
    if kind == "minute":
        return duration(rng.randint(1, 90), "minute")
    if kind == "hour":
        return duration(rng.randint(1, 12), "hour")
    if kind == "half":
        return rng.choice(
            (
                Duration("half an hour", "eine halbe Stunde", "einer halben Stunde"),
                Duration("an hour and a half", "eineinhalb Stunden", "eineinhalb Stunden"),
            )
        )
    hours, minutes = duration(rng.randint(1, 3), "hour"), duration(rng.randint(1, 59), "minute")
    return Duration(
        f"{hours.en} and {minutes.en}", f"{hours.de} und {minutes.de}", f"{hours.de_dat} und {minutes.de_dat}"
    )
