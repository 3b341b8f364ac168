"""The parallel English/German lexicon of the synth grammar: nouns with gender, people, places, days.

A German noun phrase depends on the noun's gender and the case the sentence puts it in ("der
Fernseher" as a subject, "den Fernseher" as an object, "im Wohnzimmer" after "in"), so nouns carry
their gender and `Noun.de_phrase` builds the phrase for a determiner and case. English entries are
lower-case and spelled as spoken, since eSpeak reads them aloud.
"""

from __future__ import annotations

from dataclasses import dataclass

GENDERS = ("m", "f", "n", "pl")
CASES = ("nom", "acc", "dat")

# Determiners by kind, case and gender (plural has no indefinite article).
DETERMINERS: dict[str, dict[str, dict[str, str]]] = {
    "def": {
        "nom": {"m": "der", "f": "die", "n": "das", "pl": "die"},
        "acc": {"m": "den", "f": "die", "n": "das", "pl": "die"},
        "dat": {"m": "dem", "f": "der", "n": "dem", "pl": "den"},
    },
    "indef": {
        "nom": {"m": "ein", "f": "eine", "n": "ein", "pl": ""},
        "acc": {"m": "einen", "f": "eine", "n": "ein", "pl": ""},
        "dat": {"m": "einem", "f": "einer", "n": "einem", "pl": ""},
    },
    "my": {
        "nom": {"m": "mein", "f": "meine", "n": "mein", "pl": "meine"},
        "acc": {"m": "meinen", "f": "meine", "n": "mein", "pl": "meine"},
        "dat": {"m": "meinem", "f": "meiner", "n": "meinem", "pl": "meinen"},
    },
    "none": {case: dict.fromkeys(GENDERS, "") for case in CASES},
}

# Preposition + definite article contractions that German requires ("in dem" is always "im").
CONTRACTIONS = {
    ("in", "dem"): "im",
    ("in", "das"): "ins",
    ("an", "dem"): "am",
    ("zu", "dem"): "zum",
    ("zu", "der"): "zur",
    ("von", "dem"): "vom",
}


@dataclass(frozen=True)
class Noun:
    """A noun in both languages.

    en: English noun without article ("dentist appointment"); en_article: "a", "an", or "" for
        mass nouns and plurals. de: German nominative; de_oblique: the accusative/dative form
        where it differs (weak nouns: "Nachbar" -> "Nachbarn"). gender: "m", "f", "n" or "pl".
    """

    en: str
    de: str
    gender: str
    en_article: str = "a"
    de_oblique: str = ""

    def __post_init__(self) -> None:
        if self.gender not in GENDERS:
            raise ValueError(f"noun {self.en!r}: gender must be one of {GENDERS}, got {self.gender!r}")

    def en_indef(self) -> str:
        """English with the indefinite article: "a meeting", "an alarm", "milk"."""
        return f"{self.en_article} {self.en}".strip()

    def de_noun(self, case: str) -> str:
        return self.de_oblique if case != "nom" and self.de_oblique else self.de

    def de_phrase(self, determiner: str, case: str, preposition: str = "") -> str:
        """German noun phrase: ("def", "acc") -> "den Fernseher"; ("def", "dat", "in") -> "im Wohnzimmer"."""
        article = DETERMINERS[determiner][case][self.gender]
        if preposition and (preposition, article) in CONTRACTIONS:
            words = [CONTRACTIONS[preposition, article], self.de_noun(case)]
        else:
            words = [preposition, article, self.de_noun(case)]
        return " ".join(w for w in words if w)


@dataclass(frozen=True)
class Person:
    """Someone to call or meet: a name (same in every case) or "my" + a relative."""

    en: str
    nom: str
    acc: str
    dat: str
    plural: bool = False  # "my parents are" / "meine Eltern fahren"

    def de(self, case: str) -> str:
        return {"nom": self.nom, "acc": self.acc, "dat": self.dat}[case]

    def en_possessive(self) -> str:
        """English possessive: "my mother's", "anna's"."""
        return f"{self.en}'s"


@dataclass(frozen=True)
class Room:
    """A room; the English and German prepositions differ for some ("on the balcony" / "auf dem Balkon")."""

    noun: Noun
    en_preposition: str = "in"
    de_preposition: str = "in"

    def en_location(self) -> str:
        return f"{self.en_preposition} the {self.noun.en}"

    def de_location(self) -> str:
        return self.noun.de_phrase("def", "dat", self.de_preposition)


@dataclass(frozen=True)
class Day:
    """A day or time span: English phrase and German adverbial, "für ..." and "auf ..." forms."""

    en: str  # "tomorrow", "on monday"
    de: str  # "morgen", "am Montag", "nächsten Freitag"
    de_for: str  # "für morgen", "für Montag"
    de_to: str  # "auf morgen", "auf Montag" (moving an appointment)
    specific: bool = True  # one day, so "at seven" can follow; "next week" is not
    has_part: bool = False  # names the part of the day ("tonight"), so the clock must not
    en_bare: str = ""  # after "for"/"to": "monday" for "on monday"; empty means `en`

    def en_after_preposition(self) -> str:
        return self.en_bare or self.en


WEEKDAYS = (
    ("monday", "Montag"),
    ("tuesday", "Dienstag"),
    ("wednesday", "Mittwoch"),
    ("thursday", "Donnerstag"),
    ("friday", "Freitag"),
    ("saturday", "Samstag"),
    ("sunday", "Sonntag"),
)
MONTHS = (
    ("january", "Januar", 31),
    ("february", "Februar", 28),
    ("march", "März", 31),
    ("april", "April", 30),
    ("may", "Mai", 31),
    ("june", "Juni", 30),
    ("july", "Juli", 31),
    ("august", "August", 31),
    ("september", "September", 30),
    ("october", "Oktober", 31),
    ("november", "November", 30),
    ("december", "Dezember", 31),
)


def _days() -> tuple[Day, ...]:
    days = [
        Day("today", "heute", "für heute", "auf heute"),
        Day("tomorrow", "morgen", "für morgen", "auf morgen"),
        Day("the day after tomorrow", "übermorgen", "für übermorgen", "auf übermorgen"),
        Day("tomorrow morning", "morgen früh", "für morgen früh", "auf morgen früh", has_part=True),
        Day("tonight", "heute Abend", "für heute Abend", "auf heute Abend", has_part=True),
        Day("next week", "nächste Woche", "für nächste Woche", "auf nächste Woche", specific=False),
        Day("this weekend", "am Wochenende", "fürs Wochenende", "aufs Wochenende", specific=False),
    ]
    for en, de in WEEKDAYS:
        days.append(Day(f"on {en}", f"am {de}", f"für {de}", f"auf {de}", en_bare=en))
        days.append(Day(f"next {en}", f"nächsten {de}", f"für nächsten {de}", f"auf nächsten {de}"))
    return tuple(days)


DAYS = _days()
SPECIFIC_DAYS = tuple(d for d in DAYS if d.specific)

CITIES = (
    ("berlin", "Berlin"), ("munich", "München"), ("hamburg", "Hamburg"), ("cologne", "Köln"),
    ("frankfurt", "Frankfurt"), ("vienna", "Wien"), ("zurich", "Zürich"), ("geneva", "Genf"),
    ("london", "London"), ("paris", "Paris"), ("rome", "Rom"), ("milan", "Mailand"), ("venice", "Venedig"),
    ("naples", "Neapel"), ("madrid", "Madrid"), ("lisbon", "Lissabon"), ("prague", "Prag"),
    ("warsaw", "Warschau"), ("moscow", "Moskau"), ("athens", "Athen"), ("brussels", "Brüssel"),
    ("copenhagen", "Kopenhagen"), ("stockholm", "Stockholm"), ("oslo", "Oslo"), ("amsterdam", "Amsterdam"),
    ("dublin", "Dublin"), ("new york", "New York"), ("tokyo", "Tokio"), ("boston", "Boston"),
    ("chicago", "Chicago"), ("sydney", "Sydney"), ("cairo", "Kairo"), ("beijing", "Peking"),
    ("dresden", "Dresden"), ("stuttgart", "Stuttgart"), ("leipzig", "Leipzig"), ("budapest", "Budapest"),
    ("edinburgh", "Edinburgh"), ("florence", "Florenz"), ("belgrade", "Belgrad"),
)  # fmt: skip

NAMES = (
    "anna", "peter", "maria", "thomas", "julia", "michael", "sarah", "david", "laura", "paul",
    "lisa", "martin", "emma", "daniel", "sophie", "felix", "hannah", "jonas", "clara", "simon",
)  # fmt: skip

RELATIVES = (
    Noun("mother", "Mutter", "f"), Noun("father", "Vater", "m"), Noun("sister", "Schwester", "f"),
    Noun("brother", "Bruder", "m"), Noun("boss", "Chef", "m"), Noun("wife", "Frau", "f"),
    Noun("husband", "Mann", "m"), Noun("grandmother", "Oma", "f"), Noun("grandfather", "Opa", "m"),
    Noun("daughter", "Tochter", "f"), Noun("son", "Sohn", "m"), Noun("aunt", "Tante", "f"),
    Noun("uncle", "Onkel", "m"), Noun("neighbor", "Nachbar", "m", de_oblique="Nachbarn"),
    Noun("colleague", "Kollege", "m", de_oblique="Kollegen"), Noun("doctor", "Arzt", "m"),
    Noun("parents", "Eltern", "pl", ""),
)  # fmt: skip


def _people() -> tuple[Person, ...]:
    people = [Person(name, name.capitalize(), name.capitalize(), name.capitalize()) for name in NAMES]
    for noun in RELATIVES:
        forms = (noun.de_phrase("my", case) for case in CASES)
        people.append(Person(f"my {noun.en}", *forms, plural=noun.gender == "pl"))
    return tuple(people)


PEOPLE = _people()

ROOMS = (
    Room(Noun("kitchen", "Küche", "f")), Room(Noun("living room", "Wohnzimmer", "n")),
    Room(Noun("bedroom", "Schlafzimmer", "n")), Room(Noun("bathroom", "Badezimmer", "n")),
    Room(Noun("hallway", "Flur", "m")), Room(Noun("office", "Büro", "n")), Room(Noun("garage", "Garage", "f")),
    Room(Noun("children's room", "Kinderzimmer", "n")), Room(Noun("dining room", "Esszimmer", "n")),
    Room(Noun("basement", "Keller", "m")), Room(Noun("guest room", "Gästezimmer", "n")),
    Room(Noun("garden", "Garten", "m")), Room(Noun("attic", "Dachboden", "m"), de_preposition="auf"),
    Room(Noun("balcony", "Balkon", "m"), "on", "auf"), Room(Noun("terrace", "Terrasse", "f"), "on", "auf"),
)  # fmt: skip

DEVICES = (
    Noun("light", "Licht", "n"), Noun("lamp", "Lampe", "f"), Noun("heating", "Heizung", "f"),
    Noun("radio", "Radio", "n"), Noun("television", "Fernseher", "m"), Noun("fan", "Ventilator", "m"),
    Noun("coffee machine", "Kaffeemaschine", "f"), Noun("dishwasher", "Spülmaschine", "f"),
    Noun("washing machine", "Waschmaschine", "f"), Noun("oven", "Ofen", "m", "an"),
    Noun("air conditioning", "Klimaanlage", "f", "an"), Noun("speaker", "Lautsprecher", "m"),
    Noun("computer", "Computer", "m"), Noun("printer", "Drucker", "m"), Noun("floor lamp", "Stehlampe", "f"),
    Noun("reading lamp", "Leselampe", "f"), Noun("ceiling light", "Deckenlicht", "n"),
)  # fmt: skip
LIGHTS = tuple(d for d in DEVICES if "light" in d.en or "lamp" in d.en)

OPENABLES = (
    Noun("window", "Fenster", "n"), Noun("door", "Tür", "f"), Noun("blinds", "Jalousien", "pl", ""),
    Noun("curtains", "Vorhänge", "pl", ""), Noun("shutters", "Rollläden", "pl", ""),
)  # fmt: skip

EVENTS = (
    Noun("meeting", "Meeting", "n"), Noun("appointment", "Termin", "m", "an"),
    Noun("dentist appointment", "Zahnarzttermin", "m"), Noun("doctor's appointment", "Arzttermin", "m"),
    Noun("job interview", "Vorstellungsgespräch", "n"), Noun("team meeting", "Teambesprechung", "f"),
    Noun("video call", "Videoanruf", "m"), Noun("conference call", "Telefonkonferenz", "f"),
    Noun("lunch", "Mittagessen", "n"), Noun("dinner", "Abendessen", "n"), Noun("haircut", "Friseurtermin", "m"),
    Noun("yoga class", "Yogakurs", "m"), Noun("piano lesson", "Klavierstunde", "f"),
    Noun("football practice", "Fußballtraining", "n"), Noun("exam", "Prüfung", "f", "an"),
    Noun("presentation", "Präsentation", "f"), Noun("flight", "Flug", "m"), Noun("date", "Verabredung", "f"),
)  # fmt: skip
# Events one has together with someone ("lunch with anna").
SOCIAL_EVENTS = tuple(e for e in EVENTS if e.en in {"meeting", "video call", "lunch", "dinner", "date", "appointment"})

FOODS = (
    Noun("pasta", "Nudeln", "pl", ""), Noun("rice", "Reis", "m", ""), Noun("eggs", "Eier", "pl", ""),
    Noun("pizza", "Pizza", "f"), Noun("cake", "Kuchen", "m"), Noun("potatoes", "Kartoffeln", "pl", ""),
    Noun("soup", "Suppe", "f"), Noun("bread", "Brot", "n", ""), Noun("chicken", "Hähnchen", "n"),
    Noun("tea", "Tee", "m", ""), Noun("cookies", "Kekse", "pl", ""), Noun("vegetables", "Gemüse", "n", ""),
    Noun("fish", "Fisch", "m"), Noun("roast", "Braten", "m"), Noun("lasagna", "Lasagne", "f"),
)  # fmt: skip

# Shopping items by how they are counted: (English, German, kind). "count" items are plurals
# counted directly ("six eggs" / "sechs Eier"); the others take a container or a unit.
SHOPPING_ITEMS = (
    ("milk", "Milch", "liquid"), ("orange juice", "Orangensaft", "liquid"), ("water", "Wasser", "liquid"),
    ("beer", "Bier", "liquid"), ("wine", "Wein", "liquid"), ("olive oil", "Olivenöl", "liquid"),
    ("apple juice", "Apfelsaft", "liquid"), ("rice", "Reis", "bulk"), ("flour", "Mehl", "bulk"),
    ("sugar", "Zucker", "bulk"), ("coffee", "Kaffee", "bulk"), ("pasta", "Nudeln", "bulk"),
    ("butter", "Butter", "bulk"), ("cheese", "Käse", "bulk"), ("salt", "Salz", "bulk"),
    ("yogurt", "Joghurt", "bulk"), ("chocolate", "Schokolade", "bulk"), ("bread", "Brot", "bulk"),
    ("eggs", "Eier", "count"), ("apples", "Äpfel", "count"), ("bananas", "Bananen", "count"),
    ("tomatoes", "Tomaten", "count"), ("onions", "Zwiebeln", "count"), ("lemons", "Zitronen", "count"),
    ("carrots", "Karotten", "count"), ("oranges", "Orangen", "count"), ("potatoes", "Kartoffeln", "count"),
)  # fmt: skip
# Containers and units: (English singular, plural, German singular, plural, gender).
CONTAINERS = {
    "liquid": (("bottle", "bottles", "Flasche", "Flaschen", "f"), ("liter", "liters", "Liter", "Liter", "m")),
    "bulk": (("pack", "packs", "Packung", "Packungen", "f"), ("kilo", "kilos", "Kilo", "Kilo", "n"),
             ("bag", "bags", "Tüte", "Tüten", "f")),
}  # fmt: skip

GENRES = (
    ("jazz", "Jazz"), ("rock music", "Rockmusik"), ("pop music", "Popmusik"),
    ("classical music", "klassische Musik"), ("hip hop", "Hip-Hop"), ("country music", "Countrymusik"),
    ("blues", "Blues"), ("reggae", "Reggae"), ("techno", "Techno"), ("heavy metal", "Heavy Metal"),
    ("folk music", "Volksmusik"), ("piano music", "Klaviermusik"), ("relaxing music", "entspannende Musik"),
    ("dance music", "Tanzmusik"), ("soul music", "Soulmusik"), ("christmas music", "Weihnachtsmusik"),
    ("children's songs", "Kinderlieder"), ("opera", "Oper"),
)  # fmt: skip
# "my running playlist" is "meine Playlist zum Laufen".
PLAYLISTS = (
    ("running", "Laufen"), ("cooking", "Kochen"), ("relaxing", "Entspannen"), ("studying", "Lernen"),
    ("sleeping", "Schlafen"), ("dancing", "Tanzen"), ("working", "Arbeiten"), ("driving", "Autofahren"),
    ("reading", "Lesen"), ("cleaning", "Putzen"), ("waking up", "Aufwachen"),
)  # fmt: skip

WEATHER_ADJECTIVES = (
    ("sunny", "sonnig"), ("cloudy", "bewölkt"), ("windy", "windig"), ("foggy", "neblig"), ("warm", "warm"),
    ("cold", "kalt"), ("hot", "heiß"), ("rainy", "regnerisch"), ("stormy", "stürmisch"), ("humid", "schwül"),
    ("dry", "trocken"), ("chilly", "kühl"), ("nice", "schön"), ("icy", "glatt"),
)  # fmt: skip
WEATHER_VERBS = (("rain", "regnen"), ("snow", "schneien"), ("hail", "hageln"), ("drizzle", "nieseln"))
WEATHER_GEAR = (
    Noun("umbrella", "Regenschirm", "m", "an"), Noun("jacket", "Jacke", "f"), Noun("coat", "Mantel", "m"),
    Noun("scarf", "Schal", "m"), Noun("sunscreen", "Sonnencreme", "f", ""), Noun("gloves", "Handschuhe", "pl", ""),
    Noun("hat", "Mütze", "f"), Noun("boots", "Stiefel", "pl", ""), Noun("raincoat", "Regenjacke", "f"),
)  # fmt: skip

# Measurement units: (English singular, plural, German singular, plural, gender, dimension).
UNITS = (
    ("meter", "meters", "Meter", "Meter", "m", "length"),
    ("centimeter", "centimeters", "Zentimeter", "Zentimeter", "m", "length"),
    ("kilometer", "kilometers", "Kilometer", "Kilometer", "m", "length"),
    ("mile", "miles", "Meile", "Meilen", "f", "length"),
    ("foot", "feet", "Fuß", "Fuß", "m", "length"),
    ("inch", "inches", "Zoll", "Zoll", "m", "length"),
    ("gram", "grams", "Gramm", "Gramm", "n", "mass"),
    ("kilogram", "kilograms", "Kilogramm", "Kilogramm", "n", "mass"),
    ("pound", "pounds", "Pfund", "Pfund", "n", "mass"),
    ("ounce", "ounces", "Unze", "Unzen", "f", "mass"),
    ("liter", "liters", "Liter", "Liter", "m", "volume"),
    ("milliliter", "milliliters", "Milliliter", "Milliliter", "m", "volume"),
    ("gallon", "gallons", "Gallone", "Gallonen", "f", "volume"),
    ("cup", "cups", "Tasse", "Tassen", "f", "volume"),
)

HOLIDAYS = (
    ("christmas", "Weihnachten"), ("easter", "Ostern"), ("new year's eve", "Silvester"),
    ("halloween", "Halloween"), ("my birthday", "zu meinem Geburtstag"), ("the weekend", "zum Wochenende"),
    ("the summer holidays", "zu den Sommerferien"), ("friday", "Freitag"),
)  # fmt: skip
