"""Sentence patterns, part 1: alarms, timers, the smart home, music, shopping, calls and messages.

Each pattern draws its slot values from `rng` and builds the English sentence and its German
translation from the same values, so the pair is parallel by construction. German word order is
written per pattern: separable verbs split around their object ("schalte das Licht ein"),
subordinate clauses put the verb last ("dass ich unterwegs bin").
"""

from __future__ import annotations

import random

from asr.datasets.synth_lexicon import (
    CONTAINERS,
    DEVICES,
    FOODS,
    GENRES,
    LIGHTS,
    OPENABLES,
    PEOPLE,
    PLAYLISTS,
    ROOMS,
    SHOPPING_ITEMS,
    SPECIFIC_DAYS,
    WEEKDAYS,
    Noun,
)
from asr.datasets.synth_numbers import de_number, en_number, random_clock, random_duration

Pair = tuple[str, str]

# Accusative of "one" by gender: "einen Liter", "eine Flasche", "ein Kilo".
ONE_ACC = {"m": "einen", "f": "eine", "n": "ein"}
# Messages told to someone: English main clause, German subordinate clause (verb last).
# "{clock}" is filled with a clock time.
CLAUSES = (
    ("i'm on my way", "ich unterwegs bin"),
    ("i'll be home at {clock}", "ich um {clock} zu Hause bin"),
    ("i'm running late", "ich mich verspäte"),
    ("dinner is ready", "das Essen fertig ist"),
    ("the meeting starts at {clock}", "das Meeting um {clock} anfängt"),
    ("i'll pick up the kids at {clock}", "ich die Kinder um {clock} abhole"),
    ("i'll call back later", "ich später zurückrufe"),
    ("the train is late", "der Zug Verspätung hat"),
    ("the package has arrived", "das Paket angekommen ist"),
    ("i forgot my keys", "ich meine Schlüssel vergessen habe"),
    ("we're leaving at {clock}", "wir um {clock} losfahren"),
)


def _in_room(rng: random.Random, probability: float = 0.5) -> Pair:
    """An optional location: (" in the kitchen", " in der Küche") or ("", "")."""
    if rng.random() >= probability:
        return "", ""
    room = rng.choice(ROOMS)
    return f" {room.en_location()}", f" {room.de_location()}"


def alarm_set(rng: random.Random) -> Pair:
    day = rng.choice(SPECIFIC_DAYS)
    clock = random_clock(rng, with_part=not day.has_part)
    if rng.random() < 0.3:
        return f"set an alarm for {clock.en()}", f"stell einen Wecker für {clock.de()}"
    return f"set an alarm for {clock.en()} {day.en}", f"stell einen Wecker {day.de_for} um {clock.de()}"


def wake_up(rng: random.Random) -> Pair:
    choice = rng.random()
    if choice < 0.3:
        clock = random_clock(rng)
        return f"wake me up at {clock.en()}", f"weck mich um {clock.de()} auf"
    if choice < 0.5:
        clock = random_clock(rng)
        en_day, de_day = rng.choice(WEEKDAYS)
        # Weekdays are masculine: "jeden Montag".
        return f"wake me up every {en_day} at {clock.en()}", f"weck mich jeden {de_day} um {clock.de()} auf"
    day = rng.choice(SPECIFIC_DAYS)
    clock = random_clock(rng, with_part=not day.has_part)
    en = rng.choice((f"wake me up {day.en} at {clock.en()}", f"wake me up at {clock.en()} {day.en}"))
    return en, f"weck mich {day.de} um {clock.de()} auf"


def alarm_change(rng: random.Random) -> Pair:
    clock = random_clock(rng)
    choice = rng.random()
    if choice < 0.4:
        return f"turn off my alarm for {clock.en()}", f"schalte meinen Wecker für {clock.de()} aus"
    if choice < 0.7:
        verb = rng.choice(("cancel", "delete"))
        return f"{verb} my alarm for {clock.en()}", f"lösch meinen Wecker für {clock.de()}"
    return f"change my alarm to {clock.en()}", f"stell meinen Wecker auf {clock.de()} um"


def alarm_query(rng: random.Random) -> Pair:
    if rng.random() < 0.5:
        day = rng.choice(SPECIFIC_DAYS)
        en = f"do i have an alarm set for {day.en_after_preposition()}"
        return en, f"habe ich einen Wecker {day.de_for} gestellt"
    clock = random_clock(rng)
    return f"is my alarm set for {clock.en()}", f"ist mein Wecker auf {clock.de()} gestellt"


def timer_set(rng: random.Random) -> Pair:
    length = random_duration(rng)
    if rng.random() < 0.5:
        return f"set a timer for {length.en}", f"stell einen Timer auf {length.de}"
    food = rng.choice(FOODS)
    return (
        f"set a timer for the {food.en} for {length.en}",
        f"stell einen Timer für {food.de_phrase('def', 'acc')} auf {length.de}",
    )


def timer_change(rng: random.Random) -> Pair:
    food = rng.choice(FOODS)
    food_de = food.de_phrase("def", "acc")
    timer_de = f"den Timer für {food_de}"
    choice = rng.random()
    if choice < 0.3:
        return f"cancel the {food.en} timer", f"brich {timer_de} ab"
    if choice < 0.6:
        return f"how much time is left on the {food.en} timer", f"wie lange läuft der Timer für {food_de} noch"
    length = random_duration(rng)
    return f"add {length.en} to the {food.en} timer", f"verlängere {timer_de} um {length.de}"


def device_switch(rng: random.Random) -> Pair:
    device = rng.choice(DEVICES)
    en_room, de_room = _in_room(rng)
    state = rng.choice(("on", "off"))
    particle = "ein" if state == "on" else "aus"
    en = rng.choice(
        (
            f"turn {state} the {device.en}{en_room}",
            f"turn the {device.en}{en_room} {state}",
            f"switch {state} the {device.en}{en_room}",
        )
    )
    return en, f"schalte {device.de_phrase('def', 'acc')}{de_room} {particle}"


def device_state(rng: random.Random) -> Pair:
    device = rng.choice(DEVICES)
    en_room, de_room = _in_room(rng)
    if rng.random() < 0.5:
        return f"is the {device.en}{en_room} still on", f"ist {device.de_phrase('def', 'nom')}{de_room} noch an"
    return f"did i leave the {device.en}{en_room} on", f"habe ich {device.de_phrase('def', 'acc')}{de_room} angelassen"


def lights(rng: random.Random) -> Pair:
    light = rng.choice(LIGHTS)
    en_room, de_room = _in_room(rng)
    if rng.random() < 0.6:
        percent = rng.randrange(5, 100, 5)
        return (
            f"dim the {light.en}{en_room} to {en_number(percent)} percent",
            f"dimme {light.de_phrase('def', 'acc')}{de_room} auf {de_number(percent)} Prozent",
        )
    en_adj, de_adj = rng.choice((("brighter", "heller"), ("darker", "dunkler")))
    return f"make the {light.en}{en_room} {en_adj}", f"mach {light.de_phrase('def', 'acc')}{de_room} {de_adj}"


def thermostat(rng: random.Random) -> Pair:
    room = rng.choice(ROOMS)
    degrees = rng.randint(15, 28)
    choice = rng.random()
    if choice < 0.4:
        return (
            f"set the temperature {room.en_location()} to {en_number(degrees)} degrees",
            f"stell die Temperatur {room.de_location()} auf {de_number(degrees)} Grad",
        )
    if choice < 0.7:
        return (
            f"turn the heating {room.en_location()} up to {en_number(degrees)} degrees",
            f"dreh die Heizung {room.de_location()} auf {de_number(degrees)} Grad hoch",
        )
    # Fronting the place puts the verb before the subject: "im Bad ist es zu kalt".
    en_adj, de_adj = rng.choice((("cold", "kalt"), ("warm", "warm"), ("hot", "heiß"), ("stuffy", "stickig")))
    return f"it's too {en_adj} {room.en_location()}", f"{room.de_location()} ist es zu {de_adj}"


def open_close(rng: random.Random) -> Pair:
    thing = rng.choice(OPENABLES)
    en_room, de_room = _in_room(rng, 0.7)
    en_verb, particle = rng.choice((("open", "auf"), ("close", "zu")))
    return f"{en_verb} the {thing.en}{en_room}", f"mach {thing.de_phrase('def', 'acc')}{de_room} {particle}"


def play_music(rng: random.Random) -> Pair:
    en_genre, de_genre = rng.choice(GENRES)
    en_room, de_room = _in_room(rng, 0.4)
    if rng.random() < 0.6:
        return f"play some {en_genre}{en_room}", f"spiel{de_room} etwas {de_genre}"
    return f"put on some {en_genre}{en_room}", f"mach{de_room} etwas {de_genre} an"


def playlist(rng: random.Random) -> Pair:
    en_activity, de_activity = rng.choice(PLAYLISTS)
    if rng.random() < 0.6:
        return f"play my {en_activity} playlist", f"spiel meine Playlist zum {de_activity}"
    return (
        f"shuffle my {en_activity} playlist",
        f"spiel meine Playlist zum {de_activity} in zufälliger Reihenfolge",
    )


def volume(rng: random.Random) -> Pair:
    if rng.random() < 0.5:
        percent = rng.randrange(10, 101, 10)
        return (
            f"set the volume to {en_number(percent)} percent",
            f"stell die Lautstärke auf {de_number(percent)} Prozent",
        )
    en_room, de_room = _in_room(rng)
    en_dir, de_adj = rng.choice((("up", "lauter"), ("down", "leiser")))
    return f"turn the music{en_room} {en_dir}", f"mach die Musik{de_room} {de_adj}"


MUSIC_CONTROLS = (
    ("skip this song", "überspring dieses Lied"),
    ("pause the music", "pausiere die Musik"),
    ("stop the music", "stopp die Musik"),
    ("play the next song", "spiel das nächste Lied"),
    ("play the previous song", "spiel das vorherige Lied"),
    ("repeat this song", "wiederhole dieses Lied"),
    ("who sings this song", "wer singt dieses Lied"),
    ("what song is this", "was ist das für ein Lied"),
    ("add this song to my favorites", "füge dieses Lied zu meinen Favoriten hinzu"),
)


def music_control(rng: random.Random) -> Pair:
    return rng.choice(MUSIC_CONTROLS)


def _shopping_item(rng: random.Random) -> tuple[str, str, bool, bool]:
    """An item, maybe with an amount: (English, German accusative, English plural, German plural)."""
    en, de, kind = rng.choice(SHOPPING_ITEMS)
    en_plural = kind == "count"
    de_plural = en_plural or de == "Nudeln"
    if rng.random() < 0.5:
        return en, de, en_plural, de_plural
    if kind == "count":
        n = rng.randint(2, 12)
        return f"{en_number(n)} {en}", f"{de_number(n)} {de}", True, True
    en_sg, en_pl, de_sg, de_pl, gender = rng.choice(CONTAINERS[kind])
    n = rng.choice((1, 1, 2, 3, 4, 5, 6))
    if n == 1:
        return f"a {en_sg} of {en}", f"{ONE_ACC[gender]} {de_sg} {de}", False, False
    return f"{en_number(n)} {en_pl} of {en}", f"{de_number(n)} {de_pl} {de}", True, True


def shopping_add(rng: random.Random) -> Pair:
    en_item, de_item, _, _ = _shopping_item(rng)
    if rng.random() < 0.5:
        return f"add {en_item} to my shopping list", f"setz {de_item} auf meine Einkaufsliste"
    return f"put {en_item} on the shopping list", f"setz {de_item} auf die Einkaufsliste"


def shopping_check(rng: random.Random) -> Pair:
    en_item, de_item, en_plural, de_plural = _shopping_item(rng)
    if rng.random() < 0.5:
        return f"remove {en_item} from my shopping list", f"streich {de_item} von meiner Einkaufsliste"
    en_verb, de_verb = ("are" if en_plural else "is"), ("stehen" if de_plural else "steht")
    return f"{en_verb} {en_item} on my shopping list", f"{de_verb} {de_item} auf meiner Einkaufsliste"


def call(rng: random.Random) -> Pair:
    person = rng.choice(PEOPLE)
    choice = rng.random()
    if choice < 0.5:
        return f"call {person.en}", f"ruf {person.de('acc')} an"
    if choice < 0.7:
        return f"call {person.en} back", f"ruf {person.de('acc')} zurück"
    return f"read my messages from {person.en}", f"lies meine Nachrichten von {person.de('dat')} vor"


def send_message(rng: random.Random) -> Pair:
    person = rng.choice(PEOPLE)
    what = rng.choice((Noun("message", "Nachricht", "f"), Noun("email", "E-Mail", "f", "an")))
    if rng.random() < 0.5:
        en = f"send {what.en_indef()} to {person.en}"
    else:
        en = f"send {person.en} {what.en_indef()}"
    return en, f"schick {person.de('dat')} {what.de_phrase('indef', 'acc')}"


def tell_that(rng: random.Random) -> Pair:
    person = rng.choice(PEOPLE)
    en_clause, de_clause = rng.choice(CLAUSES)
    clock = random_clock(rng)
    en_clause, de_clause = en_clause.format(clock=clock.en()), de_clause.format(clock=clock.de())
    en_verb, de_verb = rng.choice((("tell", "sag"), ("text", "schreib")))
    # German orthography requires the comma before "dass".
    return f"{en_verb} {person.en} that {en_clause}", f"{de_verb} {person.de('dat')}, dass {de_clause}"


PATTERNS = (
    alarm_set, wake_up, alarm_change, alarm_query, timer_set, timer_change, device_switch, device_state,
    lights, thermostat, open_close, play_music, playlist, volume, music_control, shopping_add,
    shopping_check, call, send_message, tell_that,
)  # fmt: skip
