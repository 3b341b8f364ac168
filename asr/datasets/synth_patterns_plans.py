"""Sentence patterns, part 2: calendar, plans and reminders, travel, weather, numbers and dates.

These carry most of the reordering: a fronted time puts the German verb second ("morgen habe ich
ein Meeting"), modal verbs send the infinitive to the end ("am Montag muss ich meine Mutter
anrufen"), and "zu" goes inside separable verbs ("daran, meine Mutter anzurufen").
"""

from __future__ import annotations

import random

from asr.datasets.synth_lexicon import (
    CITIES,
    DAYS,
    DEVICES,
    EVENTS,
    HOLIDAYS,
    MONTHS,
    PEOPLE,
    ROOMS,
    SHOPPING_ITEMS,
    SOCIAL_EVENTS,
    SPECIFIC_DAYS,
    UNITS,
    WEATHER_ADJECTIVES,
    WEATHER_GEAR,
    WEATHER_VERBS,
    WEEKDAYS,
    Day,
    Person,
)
from asr.datasets.synth_numbers import de_number, de_ordinal, en_number, en_ordinal, random_clock

Pair = tuple[str, str]

# Pick-ups: English place, German "von" + dative.
PICKUP_PLACES = (
    ("station", "vom Bahnhof"), ("airport", "vom Flughafen"), ("school", "von der Schule"),
    ("kindergarten", "vom Kindergarten"), ("office", "vom Büro"),
)  # fmt: skip


def _task(rng: random.Random) -> tuple[str, str, str, str]:
    """Something to do: (English, German object and adverbials, separable prefix, verb stem).

    German builds "meine Mutter anrufen" (infinitive) and "meine Mutter anzurufen" (with zu,
    which goes between a separable prefix and the stem) from the same parts.
    """
    person, room, device = rng.choice(PEOPLE), rng.choice(ROOMS), rng.choice(DEVICES)
    item_en, item_de, _ = rng.choice(SHOPPING_ITEMS)
    city_en, city_de = rng.choice(CITIES)
    event = rng.choice(EVENTS)
    place_en, place_de = rng.choice(PICKUP_PLACES)
    people = rng.randint(2, 12)
    table_de = f"{de_number(people)} Personen"
    tasks = (
        (f"call {person.en}", person.de("acc"), "an", "rufen"),
        (f"buy {item_en}", item_de, "", "kaufen"),
        ("water the plants", "die Pflanzen", "", "gießen"),
        ("take out the trash", "den Müll", "raus", "bringen"),
        ("pick up the kids", "die Kinder", "ab", "holen"),
        (f"pick up {person.en} from the {place_en}", f"{person.de('acc')} {place_de}", "ab", "holen"),
        ("pay the rent", "die Miete", "", "bezahlen"),
        ("take my medicine", "meine Medikamente", "", "nehmen"),
        ("feed the cat", "die Katze", "", "füttern"),
        ("walk the dog", "mit dem Hund", "raus", "gehen"),
        (f"clean the {room.noun.en}", room.noun.de_phrase("def", "acc"), "", "putzen"),
        (f"book a table for {en_number(people)} people", f"einen Tisch für {table_de}", "", "reservieren"),
        ("charge my phone", "mein Handy", "auf", "laden"),
        (f"answer the email from {person.en}", f"die E-Mail von {person.de('dat')}", "", "beantworten"),
        ("do the laundry", "die Wäsche", "", "waschen"),
        ("go to the gym", "ins Fitnessstudio", "", "gehen"),
        ("lock the front door", "die Haustür", "ab", "schließen"),
        (f"turn off the {device.en}", device.de_phrase("def", "acc"), "aus", "schalten"),
        ("return the library books", "die Bücher in die Bibliothek", "zurück", "bringen"),
        (f"book a flight to {city_en}", f"einen Flug nach {city_de}", "", "buchen"),
        ("renew my passport", "meinen Reisepass", "", "verlängern"),
        (f"tidy up the {room.noun.en}", room.noun.de_phrase("def", "acc"), "auf", "räumen"),
        ("empty the dishwasher", "die Spülmaschine", "aus", "räumen"),
        ("prepare the presentation", "die Präsentation", "vor", "bereiten"),
        ("hand in the report", "den Bericht", "ab", "geben"),
        (f"bake a cake for {person.en}", f"einen Kuchen für {person.de('acc')}", "", "backen"),
        (f"wish {person.en} a happy birthday", f"{person.de('dat')} zum Geburtstag", "", "gratulieren"),
        (f"buy a present for {person.en}", f"ein Geschenk für {person.de('acc')}", "", "kaufen"),
        (f"visit {person.en}", person.de("acc"), "", "besuchen"),
        (f"cancel my {event.en}", event.de_phrase("my", "acc"), "ab", "sagen"),
    )
    return rng.choice(tasks)


def _infinitive(obj: str, prefix: str, stem: str, with_zu: bool) -> str:
    if not with_zu:
        return f"{obj} {prefix}{stem}"
    return f"{obj} {prefix}zu{stem}" if prefix else f"{obj} zu {stem}"


def _clock_for(rng: random.Random, day: Day) -> tuple[str, str]:
    clock = random_clock(rng, with_part=not day.has_part)
    return clock.en(), clock.de()


def event_fronted(rng: random.Random) -> Pair:
    event = rng.choice(EVENTS)
    if rng.random() < 0.4:
        day = rng.choice(DAYS)
        return f"{day.en} i have {event.en_indef()}", f"{day.de} habe ich {event.de_phrase('indef', 'acc')}"
    day = rng.choice(SPECIFIC_DAYS)
    clock_en, clock_de = _clock_for(rng, day)
    # German puts the time before the object: "morgen habe ich um zehn Uhr einen Termin".
    return (
        f"{day.en} i have {event.en_indef()} at {clock_en}",
        f"{day.de} habe ich um {clock_de} {event.de_phrase('indef', 'acc')}",
    )


def calendar_query(rng: random.Random) -> Pair:
    day = rng.choice(DAYS)
    choice = rng.random()
    if choice < 0.3:
        return f"what's on my calendar {day.en}", f"was steht {day.de} in meinem Kalender"
    if choice < 0.55:
        return f"what do i have planned {day.en}", f"was habe ich {day.de} vor"
    if choice < 0.8:
        return f"do i have any appointments {day.en}", f"habe ich {day.de} Termine"
    event = rng.choice(EVENTS)
    return f"when is my {event.en}", f"wann ist {event.de_phrase('my', 'nom')}"


def schedule(rng: random.Random) -> Pair:
    event, person, day = rng.choice(SOCIAL_EVENTS), rng.choice(PEOPLE), rng.choice(SPECIFIC_DAYS)
    clock_en, clock_de = _clock_for(rng, day)
    return (
        f"schedule {event.en_indef()} with {person.en} {day.en} at {clock_en}",
        f"plane {day.de} um {clock_de} {event.de_phrase('indef', 'acc')} mit {person.de('dat')} ein",
    )


def change_event(rng: random.Random) -> Pair:
    event, day = rng.choice(EVENTS), rng.choice(SPECIFIC_DAYS)
    if rng.random() < 0.5:
        return f"cancel my {event.en} {day.en}", f"sag {event.de_phrase('my', 'acc')} {day.de} ab"
    clock_en, clock_de = _clock_for(rng, day)
    return (
        f"move my {event.en} to {day.en_after_preposition()} at {clock_en}",
        f"verschieb {event.de_phrase('my', 'acc')} {day.de_to} um {clock_de}",
    )


def need_to(rng: random.Random) -> Pair:
    day = rng.choice(DAYS)
    task_en, obj, prefix, stem = _task(rng)
    modal = rng.choice(("need to", "have to"))
    en = rng.choice((f"{day.en} i {modal} {task_en}", f"i {modal} {task_en} {day.en}"))
    return en, f"{day.de} muss ich {_infinitive(obj, prefix, stem, with_zu=False)}"


def remind(rng: random.Random) -> Pair:
    day = rng.choice(SPECIFIC_DAYS)
    task_en, obj, prefix, stem = _task(rng)
    when_en, when_de = day.en, day.de
    if rng.random() < 0.5:
        clock_en, clock_de = _clock_for(rng, day)
        when_en, when_de = f"{day.en} at {clock_en}", f"{day.de} um {clock_de}"
    en = rng.choice((f"remind me to {task_en} {when_en}", f"remind me {when_en} to {task_en}"))
    return en, f"erinnere mich {when_de} daran, {_infinitive(obj, prefix, stem, with_zu=True)}"


def _third_person(person: Person, singular: str, plural: str) -> str:
    return plural if person.plural else singular


def visit(rng: random.Random) -> Pair:
    day, person = rng.choice(DAYS), rng.choice(PEOPLE)
    if rng.random() < 0.5:
        en_be = _third_person(person, "is", "are")
        de_verb = _third_person(person, "besucht", "besuchen")
        # The pronoun object comes before the noun subject: "besucht uns meine Mutter".
        return f"{day.en} {person.en} {en_be} visiting us", f"{day.de} {de_verb} uns {person.de('nom')}"
    return f"{day.en} we're visiting {person.en}", f"{day.de} besuchen wir {person.de('acc')}"


# Ways to travel: English -ing form; German 1sg, 1pl, 3sg, and what follows the subject.
TRAVEL_VERBS = (
    ("driving", ("fahre", "fahren", "fährt"), ""),
    ("flying", ("fliege", "fliegen", "fliegt"), ""),
    ("taking the train", ("fahre", "fahren", "fährt"), "mit dem Zug "),
    ("going", ("fahre", "fahren", "fährt"), ""),
)


def travel_plan(rng: random.Random) -> Pair:
    day = rng.choice(DAYS)
    city_en, city_de = rng.choice(CITIES)
    verb_en, forms, extra = rng.choice(TRAVEL_VERBS)
    subject = rng.random()
    if subject < 0.3:
        en_subject, de_subject, de_verb = "i'm", "ich", forms[0]
    elif subject < 0.6:
        en_subject, de_subject, de_verb = "we're", "wir", forms[1]
    else:
        person = rng.choice(PEOPLE)
        en_subject = f"{person.en} {_third_person(person, 'is', 'are')}"
        de_subject, de_verb = person.de("nom"), _third_person(person, forms[2], forms[1])
    return f"{day.en} {en_subject} {verb_en} to {city_en}", f"{day.de} {de_verb} {de_subject} {extra}nach {city_de}"


def travel_info(rng: random.Random) -> Pair:
    (from_en, from_de), (to_en, to_de) = rng.sample(CITIES, 2)
    choice = rng.random()
    if choice < 0.3:
        return (
            f"how long does it take to drive from {from_en} to {to_en}",
            f"wie lange dauert die Fahrt von {from_de} nach {to_de}",
        )
    if choice < 0.5:
        return f"how far is it from {from_en} to {to_en}", f"wie weit ist es von {from_de} nach {to_de}"
    if choice < 0.75:
        day = rng.choice(DAYS)
        return (
            f"book a train ticket to {to_en} for {day.en_after_preposition()}",
            f"buch ein Zugticket nach {to_de} {day.de_for}",
        )
    nights = rng.randint(1, 9)
    if nights == 1:
        en_nights, de_nights = "one night", "eine Nacht"
    else:
        en_nights, de_nights = f"{en_number(nights)} nights", f"{de_number(nights)} Nächte"
    return f"book a hotel in {to_en} for {en_nights}", f"buch ein Hotel in {to_de} für {de_nights}"


def weather_forecast(rng: random.Random) -> Pair:
    day = rng.choice(DAYS)
    city_en, city_de = rng.choice(CITIES)
    # Asking about the future takes "werden" in German: "wie wird das Wetter morgen".
    verb = "ist" if day.en == "today" else "wird"
    if rng.random() < 0.2:
        return f"what's the weather like {day.en}", f"wie {verb} das Wetter {day.de}"
    # German orders time before place: "morgen in Berlin".
    return f"what's the weather like in {city_en} {day.en}", f"wie {verb} das Wetter {day.de} in {city_de}"


def weather_question(rng: random.Random) -> Pair:
    day = rng.choice(DAYS)
    city_en, city_de = rng.choice(CITIES)
    if rng.random() < 0.5:
        en_verb, de_verb = rng.choice(WEATHER_VERBS)
        en = rng.choice((f"will it {en_verb} in {city_en} {day.en}", f"is it going to {en_verb} in {city_en} {day.en}"))
        return en, f"wird es {day.de} in {city_de} {de_verb}"
    en_adj, de_adj = rng.choice(WEATHER_ADJECTIVES)
    return f"will it be {en_adj} in {city_en} {day.en}", f"wird es {day.de} in {city_de} {de_adj} sein"


def weather_gear(rng: random.Random) -> Pair:
    day, gear = rng.choice(DAYS), rng.choice(WEATHER_GEAR)
    if rng.random() < 0.5:
        return f"do i need {gear.en_indef()} {day.en}", f"brauche ich {day.de} {gear.de_phrase('indef', 'acc')}"
    return (
        f"should i take {gear.en_indef()} {day.en}",
        f"soll ich {day.de} {gear.de_phrase('indef', 'acc')} mitnehmen",
    )


def temperature(rng: random.Random) -> Pair:
    city_en, city_de = rng.choice(CITIES)
    choice = rng.random()
    if choice < 0.4:
        en_adj, de_adj = rng.choice(
            (("cold", "kalt"), ("warm", "warm"), ("hot", "heiß"), ("windy", "windig"), ("humid", "schwül"))
        )
        return f"how {en_adj} is it in {city_en} right now", f"wie {de_adj} ist es gerade in {city_de}"
    if choice < 0.7:
        day = rng.choice(DAYS)
        return f"how warm will it be in {city_en} {day.en}", f"wie warm wird es {day.de} in {city_de}"
    return f"how many degrees is it in {city_en}", f"wie viel Grad hat es in {city_de}"


def sun(rng: random.Random) -> Pair:
    day = rng.choice(SPECIFIC_DAYS)
    city_en, city_de = rng.choice(CITIES)
    en_verb, particle = rng.choice((("rise", "auf"), ("set", "unter")))
    return f"when does the sun {en_verb} in {city_en} {day.en}", f"wann geht die Sonne {day.de} in {city_de} {particle}"


def city_time(rng: random.Random) -> Pair:
    (one_en, one_de), (other_en, other_de) = rng.sample(CITIES, 2)
    choice = rng.random()
    if choice < 0.3:
        return f"what time is it in {one_en}", f"wie spät ist es in {one_de}"
    if choice < 0.5:
        return (
            f"what's the time difference between {one_en} and {other_en}",
            f"wie groß ist der Zeitunterschied zwischen {one_de} und {other_de}",
        )
    clock = random_clock(rng)
    # The "wenn" clause sends its verb to the end.
    return (
        f"what time is it in {one_en} when it's {clock.en()} in {other_en}",
        f"wie spät ist es in {one_de}, wenn es in {other_de} {clock.de()} ist",
    )


def _operand(rng: random.Random) -> int:
    return rng.randint(0, 999) if rng.random() < 0.2 else rng.randint(0, 99)


def arithmetic(rng: random.Random) -> Pair:
    a, b = _operand(rng), _operand(rng)
    en_op, de_op = rng.choice((("plus", "plus"), ("minus", "minus"), ("times", "mal"), ("divided by", "geteilt durch")))
    en_q, de_q = rng.choice((("what is", "was ist"), ("what's", "was ist"), ("how much is", "wie viel ist")))
    return f"{en_q} {en_number(a)} {en_op} {en_number(b)}", f"{de_q} {de_number(a)} {de_op} {de_number(b)}"


def math_misc(rng: random.Random) -> Pair:
    n = _operand(rng)
    choice = rng.random()
    if choice < 0.35:
        percent = rng.randrange(5, 100, 5)
        return (
            f"what is {en_number(percent)} percent of {en_number(n)}",
            f"was sind {de_number(percent)} Prozent von {de_number(n)}",
        )
    if choice < 0.7:
        return f"what's the square root of {en_number(n)}", f"was ist die Wurzel aus {de_number(n)}"
    return f"what is {en_number(n)} squared", f"was ist {de_number(n)} zum Quadrat"


def conversion(rng: random.Random) -> Pair:
    dimension = rng.choice(("length", "mass", "volume", "temperature"))
    n = rng.randint(1, 99) if rng.random() < 0.8 else rng.randint(100, 999)
    if dimension == "temperature":
        amount_en = "one degree" if n == 1 else f"{en_number(n)} degrees"
        amount_de = "ein Grad" if n == 1 else f"{de_number(n)} Grad"
        return f"convert {amount_en} celsius to fahrenheit", f"rechne {amount_de} Celsius in Fahrenheit um"
    source, target = rng.sample([u for u in UNITS if u[5] == dimension], 2)
    if n == 1:
        one = {"m": "einen", "f": "eine", "n": "ein"}[source[4]]
        amount_en, amount_de = f"one {source[0]}", f"{one} {source[2]}"
    else:
        amount_en, amount_de = f"{en_number(n)} {source[1]}", f"{de_number(n)} {source[3]}"
    if n > 1 and rng.random() < 0.5:
        return f"how many {target[1]} are in {amount_en}", f"wie viele {target[3]} sind {amount_de}"
    return f"convert {amount_en} to {target[1]}", f"rechne {amount_de} in {target[3]} um"


def _date(rng: random.Random) -> tuple[int, str, str]:
    """A date: (day of the month, English date, German month name)."""
    month_en, month_de, days = rng.choice(MONTHS)
    day = rng.randint(1, days)
    date_en = rng.choice((f"the {en_ordinal(day)} of {month_en}", f"{month_en} {en_ordinal(day)}"))
    return day, date_en, month_de


def date_question(rng: random.Random) -> Pair:
    day, date_en, month_de = _date(rng)
    choice = rng.random()
    if choice < 0.4:
        return f"what day of the week is {date_en}", f"welcher Wochentag ist der {de_ordinal(day, 'e')} {month_de}"
    if choice < 0.7:
        weekday_en, weekday_de = rng.choice(WEEKDAYS)
        return f"is {date_en} a {weekday_en}", f"ist der {de_ordinal(day, 'e')} {month_de} ein {weekday_de}"
    if rng.random() < 0.3:
        return "what's the date today", "welches Datum haben wir heute"
    when = rng.choice([d for d in SPECIFIC_DAYS if d.en != "today" and not d.has_part and not d.en.startswith("on ")])
    return f"what's the date {when.en}", f"welches Datum ist {when.de}"


def birthday(rng: random.Random) -> Pair:
    person = rng.choice([p for p in PEOPLE if not p.plural])
    if rng.random() < 0.3:
        return f"when is {person.en_possessive()} birthday", f"wann hat {person.de('nom')} Geburtstag"
    day, date_en, month_de = _date(rng)
    # German says "X has birthday on ...": "meine Mutter hat am dritten Mai Geburtstag".
    return (
        f"{person.en_possessive()} birthday is on {date_en}",
        f"{person.de('nom')} hat am {de_ordinal(day, 'en')} {month_de} Geburtstag",
    )


def days_until(rng: random.Random) -> Pair:
    if rng.random() < 0.4:
        holiday_en, holiday_de = rng.choice(HOLIDAYS)
        return f"how many days until {holiday_en}", f"wie viele Tage sind es noch bis {holiday_de}"
    day, date_en, month_de = _date(rng)
    return f"how many days until {date_en}", f"wie viele Tage sind es noch bis zum {de_ordinal(day, 'en')} {month_de}"


PATTERNS = (
    event_fronted, calendar_query, schedule, change_event, need_to, remind, visit, travel_plan, travel_info,
    weather_forecast, weather_question, weather_gear, temperature, sun, city_time, arithmetic, math_misc,
    conversion, date_question, birthday, days_until,
)  # fmt: skip
