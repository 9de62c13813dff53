"""What `opgan fetch` takes from which Debian package: voices (with language, sex and credits),
music pieces, ambience clips, their licences, and the held-out speakers/pieces/clips.

Everything here is declarative; `opgan.data.fetch` does the downloading, decoding and labelling.
Sources that were inspected and left out, and why (so nobody adds them back by accident):

- hedgewars-data voices: every pack (Mobster, Pirate, HillBilly, ...) has a median F0 of 285-390 Hz,
  i.e. pitched-up cartoon voices, plus grunts; not natural speech.
- freedroidrpg-data `bot_sounds/voice_samples`: espeak text-to-speech (see its `speak.py`).
- megaglest-data unit voices: 5-25 s per unit, mostly grunts/battle cries, speakers unknown and shared
  across units ("family, friends and neighbours"), so a speaker-disjoint split is impossible.
- asterisk-moh-opsound-wav: music stored at 8 kHz only; supertux `music/retro/` and `chipdisko`:
  chiptune; hedgewars `Sounds/`, colobot and freedroidrpg effects: synthetic game effects.

Searched for a second, sentence-length speech test set (`SENTENCE_VOICES`, below):

- fillets-ng-data-cs: taken (eval only). Acted dialogue of the two fish, ~37 min each, 22.05 kHz, long-term
  spectrum to 10.4-10.8 kHz. The other Czech characters hold 0.5-3.6 min each and some are voiced
  with effects (robots, gods), so they are left out.
- fillets-ng-data-nl: band-limited: the Dutch fish voices are stored at 22.05 kHz but their spectrum
  ends at 5.5 kHz (big fish) and 6.9 kHz (small fish), with 99 % of the energy below 1.3 kHz.
- fillets-ng-data `en`: 6 min of minor characters only (the fish speak Czech/Dutch, English is text).
- warzone2100-data: tutorial voice 4.2 min at 11.025 kHz, briefings 1.5 min, one voice.
- ktuberling-data: single words per language (no sentences); artikulate: its courses are not in the
  package (downloaded at run time); gcompris-qt-data: the voice packs are not in the package;
  parley-data: no audio.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Voice", "MusicSource", "BackgroundSource", "VOICES", "MUSIC", "BACKGROUND", "PACKAGES", "SENTENCE_VOICES",
           "SPEECH_SPLITS", "MUSIC_SPLITS", "BACKGROUND_SPLITS", "KLETTRES_CREDITS"]


@dataclass(frozen=True)
class Voice:
    """One speaker folder of a package. `sex` is set only where the package states it (Asterisk
    folder names `*_f_*`/`*_m_*`, credits naming a son); otherwise fetch estimates it from F0."""

    package: str
    root: str  # folder inside the unpacked package
    speaker: str  # speaker id = group name in the cache (a suffix is added if the folder is split)
    lang: str
    license: str
    attribution: str
    codec: str = "audio"  # "g722" (raw G.722 16 kHz), "gsm" (raw GSM 06.10 8 kHz), "audio" (soundfile)
    sex: str | None = None
    sex_source: str = ""
    note: str = ""
    per_subdir: bool = False  # klettres: alpha/ and syllab/ may be two different people (checked by F0)
    trim: bool = True  # cut leading/trailing silence (short prompts are joined into clips)
    skip: tuple[str, ...] = ("silence",)  # sub-folders / file stems that are not speech
    match: str = ""  # regex searched in "/" + the file's path below `root`; "" takes every file


@dataclass(frozen=True)
class MusicSource:
    package: str
    pattern: str  # glob inside the unpacked package
    prefix: str  # track id = prefix + "_" + file stem
    license: str  # default when the copyright file is not machine-readable (DEP-5)
    attribution: str
    genre: str
    exclude: tuple[str, ...] = ()  # substrings of the path that rule a file out
    copy_original: bool = False  # keep the original Ogg as music/<stem>.ogg (the first 15 tracks)
    dep5_prefix: tuple[str, str] = ("", "")  # installed path prefix -> source-tree prefix in DEP-5


@dataclass(frozen=True)
class BackgroundSource:
    package: str
    pattern: str
    prefix: str
    license: str
    attribution: str
    kinds: str  # what the clips hold (for the data card)
    exclude: tuple[str, ...] = ()
    min_seconds: float = 3.0
    name_parts: int = 1  # path parts (from the end) joined into the clip name, e.g. tileset + stem
    archive: str = ""  # a zip (.pk3) inside the package that holds the files
    dep5_prefix: tuple[str, str] = ("", "")
    # Split by scene family (the clip stem's first word: Fire1..3, FireStation -> "fire") so that takes of
    # one scene never straddle splits; `splits` names where clips may go, the rest train ("test" absent:
    # the published test sets, built from the test split, stay as they were).
    by_family: bool = False
    splits: tuple[str, ...] = ("train", "val", "test")


_AST = "usr/share/asterisk/sounds"
_ALLISON = "Allison Smith (theivrvoice.com), Digium"
VOICES: list[Voice] = [
    Voice("asterisk-core-sounds-en-g722", f"{_AST}/en_US_f_Allison", "allison_f", "en", "CC-BY-SA-3.0", _ALLISON,
          "g722", "f", "package (folder en_US_f_Allison)", trim=False),
    Voice("asterisk-core-sounds-es-g722", f"{_AST}/es_MX_f_Allison", "allison_f", "es", "CC-BY-SA-3.0", _ALLISON,
          "g722", "f", "package (folder es_MX_f_Allison)", trim=False),
    Voice("asterisk-core-sounds-fr-g722", f"{_AST}/fr_CA_f_June", "june_f", "fr", "CC-BY-SA-3.0",
          "June Wallack (junewallack.com), Digium", "g722", "f", "package (folder fr_CA_f_June)", trim=False),
    Voice("asterisk-core-sounds-it-g722", f"{_AST}/it_IT_m_Carlo", "carlo_m", "it", "CC-BY-3.0",
          "Carlo Flora (carloflora.com)", "g722", "m", "package (folder it_IT_m_Carlo)", trim=False),
    Voice("asterisk-core-sounds-ru-g722", f"{_AST}/ru_RU_f_IvrvoiceRU", "ivrvoice_ru_f", "ru", "CC-BY-3.0",
          "Maxim Topal (ivrvoice.ru)", "g722", "f", "package (folder ru_RU_f_IvrvoiceRU)", trim=False),
    Voice("asterisk-prompt-es-co", f"{_AST}/es", "july_es_co", "es", "GPL-2",
          "July E. Jiménez, Avatar Ltda. (avatar.com.co)", "gsm",
          note="Colombian Spanish telephone prompts, GSM 06.10 at 8 kHz (narrow-band)"),
    Voice("asterisk-prompt-fr-armelle", f"{_AST}/fr", "armelle_fr", "fr", "BSD-style (keep notice, no endorsement)",
          "Armelle Desjardins (voice actor); copyright 2006 Michel Gutierrez", "gsm",
          note="French telephone prompts, GSM 06.10 at 8 kHz (narrow-band)"),
    Voice("asterisk-prompt-it-menardi-wav", f"{_AST}/it_IT_f_Menardi", "menardi_f", "it", "CC-BY-SA-3.0-IT",
          "Paola Dal Zot (voice) and Marco Menardi, http://www.voip.ammdomus.it", "audio", "f",
          "package (folder it_IT_f_Menardi)", note="Italian telephone prompts, 8 kHz PCM (narrow-band)"),
]

# Credits from the KLettres handbook ("Credits and License"); languages not listed there were
# contributed later without a name in the package.
KLETTRES_CREDITS = {
    "cs": "Eva Mikulčíková", "da": "Erik Kjaer Pedersen", "de": "Helmut Kriege", "en": "Robert Wadley",
    "es": "Ana Belén Caballero and Juan Pedro Paredes", "fr": "Ludovic Grossard", "he": "Assaf Gorgon",
    "it": "Pietro Pasotti", "nds": "Manfred Wiese and Sönke Dibbern", "nl": "Geert Stams",
    "pt_BR": "Lindonjohnson Monte (father) and Michelle Monte (9-year-old son)",
}
_KLETTRES_LANGS = ("ar", "cs", "da", "de", "en", "en_GB", "es", "fr", "he", "hu", "it", "lt", "ml", "nb", "nds",
                   "nl", "pt_BR", "ru", "tn", "uk")


def _klettres(lang: str) -> Voice:
    extra = {"note": "single letters and syllables, 44.1 kHz Ogg"}
    if lang == "pt_BR":  # the credits name a father and his son; only the child's voice is heard
        extra = {"sex": "m", "sex_source": "credits (son; F0 ~290 Hz throughout, the father is not heard)",
                 "note": "child voice; letters and syllables"}
    return Voice("klettres-data", f"usr/share/klettres/{lang}", f"klettres_{lang}", lang, "GPL-2+",
                 f"KLettres (KDE Edu), {KLETTRES_CREDITS.get(lang, 'contributor not named in the package')}",
                 per_subdir=True, **extra)


VOICES += [_klettres(lang) for lang in _KLETTRES_LANGS]

# Eval-only speech of other material than the prompts and letters above: sentence-length acted
# dialogue, never trained on. `opgan fetch --sentences` writes it to its own sources root
# (<cache>/sentences/speech/, every voice in "test"). Speaker = the file name's second field
# (`<level>-m-<line>.ogg`: m = the small fish, v = the big fish).
_FILLETS_SOUND = "usr/share/games/fillets-ng/sound"
_FILLETS_CREDIT = "Fish Fillets NG, Czech voices (ALTAR interactive; Ivo and Pavel Danihelka)"
SENTENCE_VOICES: list[Voice] = [
    Voice("fillets-ng-data-cs", _FILLETS_SOUND, f"fillets_cs_{name}", "cs", "GPL-2", _FILLETS_CREDIT,
          note=f"acted game dialogue of the {name} fish, sentences, 22.05 kHz Ogg", match=rf"/cs/[^/-]+-{tok}-[^/]+\.ogg$")
    for name, tok in (("small", "m"), ("big", "v"))
]

_SUPERTUX_DEP5 = ("usr/share/games/supertux2/", "data/")
MUSIC: list[MusicSource] = [
    MusicSource("fillets-ng-data", "usr/share/games/fillets-ng/music/*.ogg", "", "GPL-2",
                "Fish Fillets NG (Ivo and Pavel Danihelka, ALTAR interactive)", "game soundtrack (synth)",
                copy_original=True),
    MusicSource("wesnoth-1.16-music", "usr/share/games/wesnoth/1.16/data/core/music/*.ogg", "wesnoth", "GPL-2+",
                "Battle for Wesnoth composers (wesnoth.org)", "orchestral"),
    MusicSource("warzone2100-music", "usr/share/games/warzone2100/music/**/*.opus", "warzone", "GPL-2+",
                "Warzone 2100 soundtracks (Eidos Interactive; Warzone 2100 Project)", "electronic / orchestral"),
    MusicSource("supertux-data", "usr/share/games/supertux2/music/**/*.ogg", "supertux", "GPL-2+",
                "SuperTux composers (supertux.org)", "game (synth, orchestral, rock)",
                exclude=("/retro/", "chipdisko"), dep5_prefix=_SUPERTUX_DEP5),
    MusicSource("colobot-common-sounds", "usr/share/games/colobot/music/*.ogg", "colobot", "GPL-3+",
                "Colobot (EPSITEC SA, TerranovaTeam)", "electronic / rock"),
    MusicSource("freedroidrpg-data", "usr/share/freedroidrpg/data/sound/music/*.ogg", "freedroid", "GPL-2+",
                "FreedroidRPG developers (freedroid.org)", "electronic / ambient"),
    MusicSource("hedgewars-data", "usr/share/games/hedgewars/Data/Music/*.ogg", "hedgewars", "GPL-2",
                "Hedgewars project (per-track credits in Data/Music/credits.txt)", "mixed (rock, world, orchestral)",
                dep5_prefix=("usr/share/games/hedgewars/", "share/hedgewars/")),
    MusicSource("megaglest-data", "usr/share/games/megaglest/**/music/*.ogg", "megaglest", "CC-BY-SA-3.0",
                "MegaGlest team and the composers credited in its copyright (Aminos, Margaras, Manolo Camp, "
                "Mattias Westlund)", "world / folk / orchestral"),
]

BACKGROUND: list[BackgroundSource] = [
    BackgroundSource("ufoai-sound", "sound/ambience/*.ogg", "ufoai", "GPL-2+",
                     "UFO: Alien Invasion team and authors (ufoai-sound copyright)",
                     "wind, city, rain, fire, water, thunder, radio, TV, machines", exclude=("alien",),
                     min_seconds=0.0, archive="usr/share/games/ufoai/base/0snd.pk3", dep5_prefix=("", "base/")),
    BackgroundSource("sonic-pi-samples", "usr/share/sonic-pi/samples/ambi_*.flac", "sonicpi", "CC0",
                     "Sonic Pi samples (Freesound contributors, CC0)", "drones, hums, room tones", min_seconds=0.0,
                     dep5_prefix=("usr/share/sonic-pi/", "etc/")),
    BackgroundSource("megaglest-data", "usr/share/games/megaglest/tilesets/*/sounds/*", "megaglest", "CC-BY-SA-3.0",
                     "MegaGlest tilesets (Titus Tscharntke and contributors; soundbible.com, dobroide)",
                     "forest birds by day, insects at night, rain, wind, wolves", exclude=("/hell/",), name_parts=3),
    BackgroundSource("supertux-data", "usr/share/games/supertux2/sounds/*.wav", "supertux", "GPL-3+",
                     "SuperTux sound effects (supertux.org)", "rain, waterfall, bubbling lava, thunder",
                     exclude=("phone", "saw", "grunts"), dep5_prefix=_SUPERTUX_DEP5),
    # City and country life recorded for two games; mostly 3-5 s takes at 11-22 kHz (band-limited, which
    # is harmless for an interferer). Interface clicks and synthetic effects are left out.
    BackgroundSource("lincity-ng-data", "usr/share/games/lincity-ng/sounds/*.wav", "lincity", "GPL-2+",
                     "LinCity-NG contributors (sound effects also CC-BY-SA-2.0)",
                     "traffic, crowds, markets, schools, hospitals, farms, mills, mines, industry, harbours, "
                     "trains, fire, water, parks", exclude=("Click", "Window", "PowerLine", "Substation"),
                     min_seconds=2.0, by_family=True, splits=("train", "val")),
    BackgroundSource("scorched3d-data", "usr/share/games/scorched3d/data/globalmods/*/data/wav/misc/*.wav",
                     "scorched3d", "GPL-2+", "Scorched 3D (Gavin Camp and contributors)",
                     "birds, frogs, ocean waves, rain, thunder, lava, city, factory, crowd cheering, cows, "
                     "aircraft, helicopters, sirens",
                     exclude=("beep", "laserdeath", "teleport", "fight4life", "riftcollapse", "extralife",
                              "lockon", "scream"),
                     min_seconds=2.0, by_family=True, splits=("train", "val")),
]

PACKAGES: dict[str, list[str]] = {
    "speech": list(dict.fromkeys(v.package for v in VOICES)),
    "music": list(dict.fromkeys(m.package for m in MUSIC)),
    "background": list(dict.fromkeys(b.package for b in BACKGROUND)),
}

# Held-out identities (base speaker ids; a speaker folder split by voice keeps its base's split).
# val/test: both sexes, languages unheard in training (hu, uk; lt, he, ar). june_f stays in test and
# ivrvoice_ru_f in val as before; the KLettres ru and uk voices are unnamed and could be one person,
# so both go to val with ivrvoice_ru_f. The narrow-band (8 kHz) prompt voices all train.
SPEECH_SPLITS = {
    "val": ["ivrvoice_ru_f", "klettres_ru", "klettres_uk", "klettres_hu"],
    "test": ["june_f", "klettres_lt", "klettres_he", "klettres_ar"],
}
# Music: the first 15 pieces keep their split; newer sources are split by piece family (hash_split).
MUSIC_SPLITS = {"val": ["rybky05", "menu"], "test": ["rybky03", "rybky10", "kufrik"]}
BACKGROUND_SPLITS = {
    "val": ["ufoai_fire", "ufoai_waterfontain", "ufoai_hum2", "sonicpi_ambi_drone"],
    "test": ["ufoai_city_abnd_ufoai_atm", "ufoai_thunder2", "ufoai_water01", "ufoai_smallfire",
             "sonicpi_ambi_glass_hum"],
}
