"""Procedural composition of pop/rock-like songs for the generated data sets.

A :class:`Song` is a score, not audio: tempo, key, mode, a section plan (intro, verse,
chorus, bridge, outro …) with per-section energy and per-stem activity, the instrument parts
that FluidSynth renders (drums on the GM percussion channel, bass, the "other" instruments,
optional backing voices) and the lead-vocal line (notes with words) that
:mod:`espnet2_ext.datagen.render` sings with espeak-ng.

Everything random comes from one ``numpy.random.Generator``, so a song is a pure function of
its seed. Instrument choices come from a :class:`ProgramSet`; the train and test sets differ
(some General MIDI programs, drum kits and espeak-ng voices occur only in the test set), on top
of the different soundfont the test split is rendered with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

import numpy as np

from espnet2_ext.constants import MUSDB_STEMS

BEATS_PER_BAR = 4

#: GM percussion key numbers used by the drum patterns.
KICK, SIDE_STICK, SNARE, CLAP, SNARE2 = 36, 37, 38, 39, 40
HAT_CLOSED, HAT_PEDAL, HAT_OPEN, CRASH, RIDE = 42, 44, 46, 49, 51
TAMBOURINE, SHAKER = 54, 70
TOMS = (50, 48, 47, 45, 43, 41)  # high to low

#: Scale intervals (semitones above the tonic).
MODES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}

#: Chord progressions as 0-based scale degrees (I=0 … VII=6), per mode.
PROGRESSIONS = {
    "major": (
        (0, 4, 5, 3),
        (5, 3, 0, 4),
        (0, 5, 3, 4),
        (0, 3, 4, 3),
        (1, 4, 0, 0),
        (0, 3, 0, 4),
        (3, 4, 0, 5),
        (0, 2, 3, 4),
        (3, 0, 4, 5),
        (0, 4, 3, 3),
    ),
    "minor": (
        (0, 5, 2, 6),
        (0, 3, 4, 0),
        (0, 6, 5, 6),
        (0, 3, 6, 2),
        (5, 6, 0, 0),
        (0, 2, 6, 3),
        (0, 5, 3, 4),
    ),
}

# fmt: off
#: Song forms: section names with bar counts (``None``: the song picks 4 or 8 bars).
FORMS = (
    (("intro", 2), ("verse", None), ("chorus", None), ("verse", None), ("chorus", None),
     ("bridge", 4), ("chorus", None), ("outro", 4)),
    (("intro", 4), ("verse", None), ("prechorus", 4), ("chorus", None), ("verse", None),
     ("prechorus", 4), ("chorus", None), ("outro", 2)),
    (("verse", None), ("chorus", None), ("verse", None), ("chorus", None),
     ("bridge", 4), ("chorus", None)),
    (("intro", 1), ("verse", None), ("verse", None), ("chorus", None), ("bridge", 4),
     ("chorus", None), ("chorus", None), ("outro", 4)),
    (("intro", 4), ("chorus", None), ("verse", None), ("chorus", None), ("bridge", 4),
     ("verse", None), ("chorus", None)),
)

#: Mean energy of each section type (drives velocities and pattern density).
SECTION_ENERGY = {
    "intro": 0.35, "verse": 0.55, "prechorus": 0.7, "chorus": 0.9, "bridge": 0.5,
    "outro": 0.4,
}

#: Probability that a stem plays in a section of each type. Real songs have sections
#: without drums, bass or vocals; every stem is forced on somewhere (see ``_plan``).
STEM_ACTIVITY = {
    "drums": {"intro": 0.4, "verse": 0.9, "prechorus": 0.95, "chorus": 1.0,
              "bridge": 0.6, "outro": 0.6},
    "bass": {"intro": 0.5, "verse": 0.9, "prechorus": 0.95, "chorus": 1.0,
             "bridge": 0.7, "outro": 0.6},
    "other": {"intro": 1.0, "verse": 0.95, "prechorus": 0.95, "chorus": 1.0,
              "bridge": 0.95, "outro": 1.0},
    "vocals": {"intro": 0.1, "verse": 0.95, "prechorus": 0.9, "chorus": 1.0,
               "bridge": 0.5, "outro": 0.2},
}

#: 16-step drum grooves ("x" = hit). Keys name GM drums; "hat" is swapped for ride or open
#: hat in high-energy sections and thinned to quarter notes in low-energy ones.
GROOVES = {
    "rock": {"kick": "x.......x.x.....", "snare": "....x.......x...",
             "hat": "x.x.x.x.x.x.x.x."},
    "pop": {"kick": "x.....x.x.......", "snare": "....x.......x...",
            "hat": "x.x.x.x.x.x.x.x.", "shaker": "xxxxxxxxxxxxxxxx"},
    "four": {"kick": "x...x...x...x...", "clap": "....x.......x...",
             "hat": "..x...x...x...x."},
    "half": {"kick": "x.........x.....", "snare": "........x.......",
             "hat": "x.x.x.x.x.x.x.x."},
    "hiphop": {"kick": "x......x..x.....", "snare": "....x.......x...",
               "hat": "xxxxxxxxxxxxxxxx"},
    "funk": {"kick": "x..x..x...x..x..", "snare": "....x..x.x..x...",
             "hat": "xxxxxxxxxxxxxxxx"},
    "ballad": {"kick": "x.......x.......", "stick": "....x.......x...",
               "hat": "x.x.x.x.x.x.x.x."},
}

BASS_STYLES = ("whole", "quarters", "eighths", "root_fifth", "syncopated", "walking",
               "octaves")
COMP_STYLES = ("block", "arpeggio", "strum", "sustain", "offbeat")

#: Lyrics vocabulary: one word per sung note.
WORDS = (
    "love", "night", "light", "heart", "fire", "home", "you", "me", "stay", "dream",
    "go", "high", "time", "rain", "sky", "run", "free", "day", "soul", "oh", "yeah",
    "la", "na", "ooh", "hold", "on", "feel", "shine", "gold", "down", "low", "sun",
    "blue", "true", "fall", "call", "all", "now", "why", "cry", "fly", "know", "slow",
    "glow", "burn", "turn", "dance", "eyes", "world", "back", "way", "mine", "line",
    "gone", "song", "long", "road", "sea", "my", "we", "say", "play", "heart", "baby",
    "away", "tonight", "forever", "alive", "again", "morning",
)

_NAME_WORDS_A = (
    "Amber", "Velvet", "Silver", "Paper", "Neon", "Hollow", "Golden", "Crimson",
    "Quiet", "Electric", "Broken", "Wild", "Lonely", "Midnight", "Northern", "Crystal",
    "Distant", "Summer", "Winter", "Burning", "Fading", "Little", "Secret", "Restless",
)
_NAME_WORDS_B = (
    "Foxes", "Owls", "Rivers", "Lights", "Engines", "Harbors", "Ghosts", "Wolves",
    "Tigers", "Sparrows", "Machines", "Satellites", "Lanterns", "Echoes", "Pilots",
    "Gardens", "Strangers", "Comets", "Horses", "Mirrors",
)
_TITLE_WORDS = (
    "Night", "Drive", "Moon", "Heart", "Fire", "Home", "Rain", "Sky", "Road", "Gold",
    "Sea", "Dream", "Light", "Storm", "Shadow", "City", "Window", "Morning", "Dance",
    "River", "Echo", "Signal", "Stone", "Glass", "Summer", "Ocean", "Garden", "Line",
)

# fmt: on


@dataclass(frozen=True)
class ProgramSet:
    """Instrument choices for one split (0-based General MIDI program numbers).

    Args:
        name: label recorded in the manifest.
        drum_kits: GM percussion kits (bank 128 programs: 0 Standard, 8 Room, 16 Power,
            24 Electronic, 25 TR-808, 32 Jazz, 40 Brush).
        bass: bass programs (32–39).
        keys: pianos, electric pianos, organs.
        guitars: guitars (24–31); 29/30 (overdrive/distortion) play power chords.
        pads: strings and synth pads (sustained chords).
        leads: melodic instruments for riffs in sections without vocals.
        backing_voices: GM voice programs for backing vocals (52 choir aahs, 53 voice
            oohs, 54 synth voice, 85 voice lead).
        singers: espeak-ng voices with their register ("female"/"male") for the lead
            vocal.
    """

    name: str
    drum_kits: Tuple[int, ...]
    bass: Tuple[int, ...]
    keys: Tuple[int, ...]
    guitars: Tuple[int, ...]
    pads: Tuple[int, ...]
    leads: Tuple[int, ...]
    backing_voices: Tuple[int, ...]
    singers: Tuple[Tuple[str, str], ...]

    def __post_init__(self) -> None:
        for attr in (
            "drum_kits",
            "bass",
            "keys",
            "guitars",
            "pads",
            "leads",
            "backing_voices",
        ):
            values = getattr(self, attr)
            if not values or any(not 0 <= v <= 127 for v in values):
                raise ValueError(
                    f"ProgramSet {self.name!r}: {attr}={values} must be a non-empty "
                    "tuple of 0-based MIDI programs in [0, 127]"
                )
        if not self.singers or any(
            r not in ("female", "male") for _, r in self.singers
        ):
            raise ValueError(
                f"ProgramSet {self.name!r}: singers must be non-empty (voice, register) "
                "pairs with register 'female' or 'male'"
            )


# fmt: off
#: Programs for train/valid songs and FMA-like mixtures.
TRAIN_PROGRAMS = ProgramSet(
    name="train",
    drum_kits=(0, 8, 16, 24, 32),
    bass=(32, 33, 34, 35, 38),
    keys=(0, 1, 4, 5, 16, 18),
    guitars=(24, 25, 27, 29, 30),
    pads=(48, 49, 50, 89, 90),
    leads=(61, 65, 73, 80, 81),
    backing_voices=(52, 53),
    singers=(
        ("en-us+f1", "female"), ("en-us+f3", "female"), ("en-us+f5", "female"),
        ("en-us+m1", "male"), ("en-us+m3", "male"), ("en-us+m6", "male"),
    ),
)

#: Programs for test songs: overlapping families, with held-out programs, kits and voices
#: (TR-808 and brush kits, slap and synth-2 bass, clavinet, electric grand, percussive
#: organ, jazz/muted guitar, trumpet, tenor sax, clarinet, synth voice, other singers).
TEST_PROGRAMS = ProgramSet(
    name="test",
    drum_kits=(0, 25, 40, 8),
    bass=(33, 34, 36, 39),
    keys=(0, 2, 4, 7, 17),
    guitars=(25, 26, 28, 29),
    pads=(48, 51, 88, 92),
    leads=(56, 66, 71, 81),
    backing_voices=(52, 53, 54),
    singers=(
        ("en-us+f2", "female"), ("en-us+f4", "female"), ("en-us+steph", "female"),
        ("en-us+m2", "male"), ("en-us+m5", "male"), ("en-us+m7", "male"),
    ),
)

# fmt: on

PROGRAM_SETS = {"train": TRAIN_PROGRAMS, "test": TEST_PROGRAMS}


@dataclass(frozen=True)
class Note:
    """A note; times in beats from the song start."""

    start: float
    duration: float
    pitch: int
    velocity: int


@dataclass(frozen=True)
class SungNote(Note):
    """A lead-vocal note and the word sung on it."""

    word: str = "la"


@dataclass
class Part:
    """One instrument line rendered by FluidSynth.

    Args:
        name: role, e.g. ``"drums"``, ``"bass"``, ``"comp"``, ``"pad"``, ``"lead"``,
            ``"backing"``.
        stem: the MUSDB stem it belongs to.
        program: 0-based GM program (drum kit number on the percussion channel).
        channel: 0-based MIDI channel (9 = GM percussion).
        pan: -1 (left) … 1 (right).
        volume: CC7 channel volume.
        reverb: CC91 reverb send.
        chorus: CC93 chorus send.
    """

    name: str
    stem: str
    program: int
    channel: int
    pan: float
    volume: int
    reverb: int
    chorus: int
    notes: List[Note] = field(default_factory=list)

    @property
    def is_drums(self) -> bool:
        return self.channel == 9


@dataclass(frozen=True)
class Chord:
    """A chord as pitch classes, root first."""

    root: int
    pcs: Tuple[int, ...]


@dataclass(frozen=True)
class ChordSpan:
    start: float  # beats
    duration: float  # beats
    chord: Chord


@dataclass(frozen=True)
class Section:
    name: str
    start_beat: float
    bars: int
    energy: float
    active: FrozenSet[str]

    @property
    def end_beat(self) -> float:
        return self.start_beat + self.bars * BEATS_PER_BAR


@dataclass
class Song:
    """A composed song: the score that :func:`render.render_stems` turns into audio."""

    artist: str
    title: str
    duration: float  # seconds (the rendered length)
    bpm: float
    tonic: int  # pitch class, 0 = C
    mode: str
    swing: float
    sections: List[Section]
    harmony: List[ChordSpan]
    parts: List[Part]
    lead_vocal: List[SungNote]
    singer: str  # espeak-ng voice
    singer_register: str
    vocal_pan: float
    program_set: str
    groove: str
    bass_style: str

    @property
    def name(self) -> str:
        """Folder name in the MUSDB layout: ``"Artist - Title"``."""
        return f"{self.artist} - {self.title}"

    def beats_to_seconds(self, beats: float) -> float:
        return beats * 60.0 / self.bpm

    def stem_parts(self, stem: str) -> List[Part]:
        return [p for p in self.parts if p.stem == stem]

    def summary(self) -> Dict[str, object]:
        """JSON-friendly description for the generation manifest."""
        names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
        return {
            "name": self.name,
            "bpm": round(self.bpm, 2),
            "key": f"{names[self.tonic]} {self.mode}",
            "swing": round(self.swing, 3),
            "groove": self.groove,
            "bass_style": self.bass_style,
            "sections": [
                {"name": s.name, "bars": s.bars, "active": sorted(s.active)}
                for s in self.sections
            ],
            "parts": [
                {k: v for k, v in asdict(p).items() if k != "notes"}
                | {"notes": len(p.notes)}
                for p in self.parts
            ],
            "singer": self.singer,
            "lead_vocal_notes": len(self.lead_vocal),
            "program_set": self.program_set,
        }


# --------------------------------------------------------------------------- helpers


def scale_offset(mode: str, degree: int) -> int:
    """Semitones above the tonic of scale ``degree`` (any integer; 7 = octave up)."""
    scale = MODES[mode]
    octave, index = divmod(degree, 7)
    return 12 * octave + scale[index]


def build_chord(
    tonic: int, mode: str, degree: int, seventh: bool, major_five: bool
) -> Chord:
    """Diatonic triad (or seventh chord) on ``degree``; V major in minor if asked."""
    steps = (0, 2, 4, 6) if seventh else (0, 2, 4)
    pcs = [(tonic + scale_offset(mode, degree + s)) % 12 for s in steps]
    if mode == "minor" and major_five and degree % 7 == 4:
        pcs[1] = (pcs[1] + 1) % 12  # raised leading tone: harmonic-minor dominant
    return Chord(root=pcs[0], pcs=tuple(pcs))


def pitch_in_range(pc: int, low: int, high: int, near: Optional[float] = None) -> int:
    """A MIDI pitch of class ``pc`` in [low, high], the one closest to ``near``."""
    candidates = [p for p in range(low, high + 1) if p % 12 == pc % 12]
    if not candidates:
        raise ValueError(f"range [{low}, {high}] holds no pitch of class {pc}")
    target = (low + high) / 2 if near is None else near
    return min(candidates, key=lambda p: (abs(p - target), p))


def voice_chord(
    pcs: Sequence[int], low: int, high: int, previous: Optional[List[int]]
) -> List[int]:
    """A close-position voicing of ``pcs`` in [low, high] near the previous voicing."""
    centre = (low + high) / 2 if not previous else float(np.mean(previous))
    best: Optional[List[int]] = None
    best_cost = float("inf")
    for inversion in range(len(pcs)):
        order = list(pcs[inversion:]) + list(pcs[:inversion])
        for base in range(low, high + 1):
            if base % 12 != order[0] % 12:
                continue
            notes = [base]
            for pc in order[1:]:
                nxt = notes[-1] + 1
                while nxt % 12 != pc % 12:
                    nxt += 1
                notes.append(nxt)
            if notes[-1] > high:
                continue
            cost = abs(float(np.mean(notes)) - centre)
            if cost < best_cost:
                best, best_cost = notes, cost
    if best is None:
        raise ValueError(f"no voicing of {pcs} fits in [{low}, {high}]")
    return best


class _Composer:
    """Builds one song; all randomness from ``rng``."""

    def __init__(
        self,
        rng: np.random.Generator,
        duration: float,
        programs: ProgramSet,
        instrumental: bool,
    ) -> None:
        self.rng = rng
        self.duration = duration
        self.programs = programs
        self.instrumental = instrumental

    # -- small random helpers
    def choice(self, seq: Sequence):
        return seq[int(self.rng.integers(len(seq)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def vel(self, base: float, energy: float, spread: float = 8.0) -> int:
        v = base * (0.7 + 0.45 * energy) + self.rng.normal(0.0, spread)
        return int(np.clip(round(v), 1, 127))

    def t(self, beat: float) -> float:
        """Swing off-beat eighths (and the in-between sixteenths by half as much)."""
        frac = beat % 1.0
        if abs(frac - 0.5) < 1e-6:
            return beat + self.swing
        if abs(frac - 0.25) < 1e-6 or abs(frac - 0.75) < 1e-6:
            return beat + self.swing / 2
        return beat

    # -- song-level decisions
    def compose(self) -> Song:
        rng = self.rng
        self.bpm = float(np.round(rng.uniform(72, 150), 1))
        self.tonic = int(rng.integers(12))
        self.mode = "major" if self.chance(0.6) else "minor"
        self.major_five = self.chance(0.5)
        self.swing = float(rng.uniform(0.08, 0.16)) if self.chance(0.2) else 0.0
        self.sevenths = self.chance(0.3)
        self.groove = self.choice(tuple(GROOVES))
        self.bass_style = self.choice(BASS_STYLES)
        self.section_bars = int(self.choice((4, 8)))
        self._plan()
        parts: List[Part] = []
        parts.append(self._drums())
        parts.append(self._bass())
        parts.extend(self._others())
        lead: List[SungNote] = []
        singer, register = self.choice(self.programs.singers)
        if not self.instrumental:
            lead = self._lead_vocal(register)
            backing = self._backing_vocals()
            if backing is not None:
                parts.append(backing)
        artist = f"The {self.choice(_NAME_WORDS_A)} {self.choice(_NAME_WORDS_B)}"
        if self.chance(0.3):
            title = self.choice(_TITLE_WORDS)
        else:
            title = f"{self.choice(_NAME_WORDS_A)} {self.choice(_TITLE_WORDS)}"
        return Song(
            artist=artist,
            title=title,
            duration=self.duration,
            bpm=self.bpm,
            tonic=self.tonic,
            mode=self.mode,
            swing=self.swing,
            sections=self.sections,
            harmony=self.harmony,
            parts=parts,
            lead_vocal=lead,
            singer=singer,
            singer_register=register,
            vocal_pan=float(rng.uniform(-0.1, 0.1)),
            program_set=self.programs.name,
            groove=self.groove,
            bass_style=self.bass_style,
        )

    def _plan(self) -> None:
        """Sections covering the duration, their chords and which stems play in each."""
        rng = self.rng
        form = self.choice(FORMS)
        beats_needed = self.duration * self.bpm / 60.0 + BEATS_PER_BAR
        progressions = PROGRESSIONS[self.mode]
        prog_of = {name: self.choice(progressions) for name, _ in form}
        # Chord changes per bar: one (usual), two (faster harmony) or one per two bars.
        rhythm_of = {
            name: float(self.choice((4.0, 4.0, 4.0, 2.0, 8.0))) for name, _ in form
        }
        self.sections = []
        self.harmony = []
        beat = 0.0
        index = 0
        while beat < beats_needed:
            name, bars = form[index % len(form)]
            index += 1
            bars = self.section_bars if bars is None else bars
            energy = float(
                np.clip(SECTION_ENERGY[name] + rng.normal(0, 0.05), 0.2, 1.0)
            )
            active = frozenset(
                stem for stem in MUSDB_STEMS if self.chance(STEM_ACTIVITY[stem][name])
            )
            if self.instrumental:
                active = active - {"vocals"}
            self.sections.append(Section(name, beat, bars, energy, active))
            span = rhythm_of[name]
            prog = prog_of[name]
            n_chords = int(bars * BEATS_PER_BAR / span)
            for k in range(max(n_chords, 1)):
                degree = prog[k % len(prog)]
                chord = build_chord(
                    self.tonic, self.mode, degree, self.sevenths, self.major_five
                )
                length = min(span, bars * BEATS_PER_BAR - k * span)
                self.harmony.append(ChordSpan(beat + k * span, length, chord))
            beat += bars * BEATS_PER_BAR
        self._force_every_stem_on()

    def _force_every_stem_on(self) -> None:
        """Each stem must sound within the rendered duration: if a stem is off in every
        section that is rendered, switch it on in the one covering the most of the
        rendered time (the busiest one on ties)."""
        end_beat = self.duration * self.bpm / 60.0
        # A section counts when at least two of its beats are rendered (a vocal phrase
        # may start a beat late); the first section always counts.
        audible = [
            i
            for i, s in enumerate(self.sections)
            if i == 0 or s.start_beat < end_beat - 2.0
        ]
        stems = [s for s in MUSDB_STEMS if not (self.instrumental and s == "vocals")]
        for stem in stems:
            if any(stem in self.sections[i].active for i in audible):
                continue
            i = max(
                audible,
                key=lambda i: (
                    min(self.sections[i].end_beat, end_beat)
                    - self.sections[i].start_beat,
                    self.sections[i].energy,
                ),
            )
            s = self.sections[i]
            self.sections[i] = Section(
                s.name, s.start_beat, s.bars, s.energy, s.active | {stem}
            )

    def _spans_in(self, section: Section) -> List[ChordSpan]:
        return [
            c for c in self.harmony if section.start_beat <= c.start < section.end_beat
        ]

    def _mix_settings(self, pan_range: float = 0.8) -> Dict[str, object]:
        rng = self.rng
        return dict(
            pan=float(rng.uniform(-pan_range, pan_range)),
            volume=int(rng.integers(90, 120)),
            reverb=int(rng.integers(10, 70)),
            chorus=int(rng.integers(0, 40)),
        )

    # -- drums
    def _drums(self) -> Part:
        rng = self.rng
        part = Part(
            "drums",
            "drums",
            int(self.choice(self.programs.drum_kits)),
            9,
            **self._mix_settings(0.15),
        )
        groove = GROOVES[self.groove]
        snare_note = SNARE if self.chance(0.7) else SNARE2
        previous_active = False
        for si, section in enumerate(self.sections):
            if "drums" not in section.active:
                previous_active = False
                continue
            e = section.energy
            hat_key = HAT_CLOSED
            hat = groove["hat"]
            if e > 0.8 and self.chance(0.5):
                hat_key = RIDE if self.chance(0.5) else HAT_OPEN
                hat = "x.x.x.x.x.x.x.x." if hat_key == RIDE else "..x...x...x...x."
            elif e < 0.45:
                hat = "x...x...x...x..."
            is_last = si == len(self.sections) - 1
            fill = not is_last and self.chance(0.5)
            for bar in range(section.bars):
                bar_start = section.start_beat + bar * BEATS_PER_BAR
                fill_bar = fill and bar == section.bars - 1
                for key, pattern in (("kick", groove["kick"]), ("hat", hat)) + tuple(
                    (k, v) for k, v in groove.items() if k not in ("kick", "hat")
                ):
                    note = {
                        "kick": KICK,
                        "snare": snare_note,
                        "clap": CLAP,
                        "stick": SIDE_STICK,
                        "hat": hat_key,
                        "shaker": SHAKER,
                    }[key]
                    if key == "shaker" and e < 0.6:
                        continue
                    for step, c in enumerate(pattern):
                        if c != "x":
                            continue
                        beat = step / 4.0
                        if fill_bar and beat >= 2.0:
                            continue
                        accent = (
                            1.0 if step % 4 == 0 else (0.85 if step % 2 == 0 else 0.7)
                        )
                        base = {"kick": 110, "hat": 85, "shaker": 60}.get(key, 105)
                        start = self.t(bar_start + beat) + rng.normal(0, 0.004)
                        part.notes.append(
                            Note(
                                max(start, 0.0),
                                0.2,
                                note,
                                self.vel(base * accent, e, 6),
                            )
                        )
                if bar == 0 and (e > 0.6 or not previous_active) and self.chance(0.7):
                    part.notes.append(Note(bar_start, 1.0, CRASH, self.vel(110, e, 5)))
                if fill_bar:
                    toms = list(TOMS) if self.chance(0.6) else [snare_note] * 6
                    for k in range(8):
                        beat = 2.0 + k * 0.25
                        key_note = toms[min(k * len(toms) // 8, len(toms) - 1)]
                        part.notes.append(
                            Note(
                                self.t(bar_start + beat),
                                0.2,
                                key_note,
                                self.vel(90 + 3 * k, e, 5),
                            )
                        )
                    part.notes.append(
                        Note(bar_start + 2.0, 0.2, KICK, self.vel(100, e))
                    )
            previous_active = True
        return part

    # -- bass
    def _bass(self) -> Part:
        part = Part(
            "bass",
            "bass",
            int(self.choice(self.programs.bass)),
            0,
            **self._mix_settings(0.2),
        )
        part.reverb = int(self.rng.integers(0, 25))  # bass stays dry, as in most mixes
        low, high = 28, 50
        for section in self.sections:
            if "bass" not in section.active:
                continue
            e = section.energy
            style = self.bass_style
            if e < 0.45:
                style = "whole" if self.chance(0.5) else "root_fifth"
            elif e > 0.8 and style == "whole":
                style = "eighths"
            spans = self._spans_in(section)
            for i, span in enumerate(spans):
                nxt = spans[i + 1].chord if i + 1 < len(spans) else span.chord
                root = pitch_in_range(span.chord.root, low, low + 11)
                fifth = root + 7
                pattern = self._bass_pattern(style, span, root, fifth, nxt)
                for offset, dur, pitch, accent in pattern:
                    if offset >= span.duration:
                        continue
                    dur = min(dur, span.duration - offset)
                    pitch = int(np.clip(pitch, low, high))
                    part.notes.append(
                        Note(
                            self.t(span.start + offset),
                            dur * 0.92,
                            pitch,
                            self.vel(100 * accent, e, 6),
                        )
                    )
        return part

    def _bass_pattern(
        self, style: str, span: ChordSpan, root: int, fifth: int, nxt: Chord
    ) -> List[Tuple[float, float, int, float]]:
        d = span.duration
        third = root + (span.chord.pcs[1] - span.chord.pcs[0]) % 12
        if style == "whole":
            return [(0.0, d, root, 1.0)]
        if style == "quarters":
            return [
                (b, 1.0, root, 1.0 if b % 2 == 0 else 0.85)
                for b in np.arange(0, d, 1.0)
            ]
        if style == "eighths":
            return [
                (b, 0.5, root, 1.0 if b % 1 == 0 else 0.8) for b in np.arange(0, d, 0.5)
            ]
        if style == "root_fifth":
            seq = (root, fifth, root + 12, fifth)
            return [(b, 1.0, seq[int(b) % 4], 1.0) for b in np.arange(0, d, 1.0)]
        if style == "syncopated":
            out = []
            for bar in np.arange(0, d, 4.0):
                out += [
                    (bar, 1.5, root, 1.0),
                    (bar + 1.5, 0.5, root, 0.8),
                    (bar + 2.0, 1.0, fifth if self.chance(0.5) else root, 0.9),
                    (bar + 3.5, 0.5, root + 12 if self.chance(0.4) else root, 0.8),
                ]
            return out
        if style == "walking":
            target = pitch_in_range(nxt.root, root - 6, root + 6)
            approach = target - 1 if self.chance(0.5) else target + 1
            seq = (root, third, fifth, approach)
            return [
                (b, 1.0, seq[min(int(b) % 4 if d > 4 else int(b), 3)], 0.9)
                for b in np.arange(0, d, 1.0)
            ]
        # octaves (disco)
        return [
            (b, 0.5, root if (b * 2) % 2 == 0 else root + 12, 0.9)
            for b in np.arange(0, d, 0.5)
        ]

    # -- other: comping, pad, lead
    def _others(self) -> List[Part]:
        rng = self.rng
        parts: List[Part] = []
        use_keys = self.chance(0.5)
        families = [("keys", self.programs.keys), ("guitars", self.programs.guitars)]
        if not use_keys:
            families.reverse()
        comp_channels = (1, 2)
        n_comp = 2 if self.chance(0.5) else 1
        pans = rng.permutation([-1.0, 1.0]) * rng.uniform(0.2, 0.8, size=2)
        for k in range(n_comp):
            family, programs = families[k]
            program = int(self.choice(programs))
            style = self.choice(COMP_STYLES)
            if family == "guitars" and style == "sustain":
                style = "strum"
            if family == "keys" and program in (16, 17, 18) and self.chance(0.6):
                style = "sustain"  # organs mostly hold chords
            settings = self._mix_settings()
            settings["pan"] = float(pans[k])
            part = Part(f"comp:{style}", "other", program, comp_channels[k], **settings)
            self._comp(part, style, power_chords=program in (29, 30), only_some=k == 1)
            parts.append(part)
        if self.chance(0.6):
            part = Part(
                "pad",
                "other",
                int(self.choice(self.programs.pads)),
                3,
                **self._mix_settings(0.5),
            )
            part.volume = int(rng.integers(70, 100))
            self._pad(part, chorus_only=self.chance(0.5))
            parts.append(part)
        if self.chance(0.6):
            part = Part(
                "lead",
                "other",
                int(self.choice(self.programs.leads)),
                4,
                **self._mix_settings(0.6),
            )
            self._lead_instrument(part)
            if part.notes:
                parts.append(part)
        # the "other" stem must sound wherever the plan says so: the first comping part
        # plays in every section where "other" is active (see _comp).
        return parts

    def _comp(
        self, part: Part, style: str, power_chords: bool, only_some: bool
    ) -> None:
        previous: Optional[List[int]] = None
        rhythms = (
            (0.0, 1.0, 2.0, 3.0),
            (0.0, 1.5, 3.0),
            (0.0, 1.5, 2.5, 3.5),
            (0.0, 2.0),
            (0.0, 0.5, 1.5, 2.0, 3.0),
        )
        rhythm = self.choice(rhythms)
        for section in self.sections:
            if "other" not in section.active:
                continue
            if (
                only_some
                and section.name not in ("chorus", "prechorus", "bridge")
                and (self.chance(0.5))
            ):
                continue
            e = section.energy
            for span in self._spans_in(section):
                if power_chords:
                    root = pitch_in_range(span.chord.root, 40, 52)
                    voicing = [root, root + 7, root + 12]
                else:
                    voicing = voice_chord(span.chord.pcs, 50, 76, previous)
                    previous = voicing
                self._comp_span(part, style, rhythm, span, voicing, e)

    def _comp_span(
        self,
        part: Part,
        style: str,
        rhythm: Tuple[float, ...],
        span: ChordSpan,
        voicing: List[int],
        e: float,
    ) -> None:
        d = span.duration
        add = part.notes.append
        if style == "sustain":
            for p in voicing:
                add(Note(span.start, d * 0.98, p, self.vel(75, e, 5)))
        elif style == "block":
            hits = [b + o for b in np.arange(0, d, 4.0) for o in rhythm if b + o < d]
            for i, h in enumerate(hits):
                nxt = hits[i + 1] if i + 1 < len(hits) else d
                for p in voicing:
                    add(
                        Note(
                            self.t(span.start + h), (nxt - h) * 0.9, p, self.vel(85, e)
                        )
                    )
        elif style == "arpeggio":
            step = 0.5 if e < 0.75 else 0.25
            order = voicing + [voicing[0] + 12] + voicing[1:][::-1]
            for i, b in enumerate(np.arange(0, d, step)):
                p = order[i % len(order)]
                add(Note(self.t(span.start + b), step * 1.6, p, self.vel(80, e, 6)))
        elif style == "strum":
            hits = [b + o for b in np.arange(0, d, 4.0) for o in rhythm if b + o < d]
            for i, h in enumerate(hits):
                nxt = hits[i + 1] if i + 1 < len(hits) else d
                down = (h % 1.0) < 1e-6
                notes = voicing if down else voicing[::-1]
                for k, p in enumerate(notes):
                    start = self.t(span.start + h) + 0.015 * k
                    add(
                        Note(
                            start,
                            max((nxt - h) * 0.9 - 0.015 * k, 0.1),
                            p,
                            self.vel(85 if down else 70, e),
                        )
                    )
        elif style == "offbeat":
            for b in np.arange(0.5, d, 1.0):
                for p in voicing:
                    add(Note(self.t(span.start + b), 0.3, p, self.vel(80, e)))
        else:
            raise ValueError(
                f"unknown comping style {style!r}; use one of {COMP_STYLES}"
            )

    def _pad(self, part: Part, chorus_only: bool) -> None:
        previous: Optional[List[int]] = None
        for section in self.sections:
            if "other" not in section.active:
                continue
            if chorus_only and section.name not in ("chorus", "bridge", "outro"):
                continue
            for span in self._spans_in(section):
                voicing = voice_chord(span.chord.pcs, 55, 79, previous)
                previous = voicing
                for p in voicing:
                    part.notes.append(
                        Note(
                            span.start,
                            span.duration,
                            p,
                            self.vel(65, section.energy, 4),
                        )
                    )

    def _lead_instrument(self, part: Part) -> None:
        """Riffs from the pentatonic scale in sections without lead vocals."""
        scale = [0, 2, 4, 7, 9] if self.mode == "major" else [0, 3, 5, 7, 10]
        pitches = sorted(p for p in range(60, 85) if (p - self.tonic) % 12 in scale)
        motif_rhythm = self._phrase_rhythm(8.0, 0.6)
        motif_steps = self.rng.integers(-2, 3, size=len(motif_rhythm))
        for section in self.sections:
            if "other" not in section.active or "vocals" in section.active:
                continue
            for bar in range(0, section.bars, 2):
                start = section.start_beat + bar * BEATS_PER_BAR
                idx = int(self.rng.integers(len(pitches) // 3, 2 * len(pitches) // 3))
                for (offset, dur), step in zip(motif_rhythm, motif_steps):
                    if start + offset >= section.end_beat:
                        break
                    idx = int(np.clip(idx + step, 0, len(pitches) - 1))
                    part.notes.append(
                        Note(
                            self.t(start + offset),
                            dur * 0.9,
                            pitches[idx],
                            self.vel(90, section.energy),
                        )
                    )

    # -- vocals
    def _phrase_rhythm(self, length: float, energy: float) -> List[Tuple[float, float]]:
        """(offset, duration) pairs filling ``length`` beats, ending with a rest."""
        rng = self.rng
        durations = np.array([0.5, 1.0, 1.5, 2.0])
        weights = (
            np.array([0.45, 0.35, 0.1, 0.1])
            if energy < 0.7
            else np.array([0.3, 0.35, 0.15, 0.2])
        )
        pos = float(self.choice((0.0, 0.0, 0.5, 1.0)))
        end = length - float(self.choice((1.0, 1.5, 2.0)))
        out: List[Tuple[float, float]] = []
        while pos < end:
            dur = float(rng.choice(durations, p=weights / weights.sum()))
            dur = min(dur, end - pos) if end - pos >= 0.5 else 0.5
            out.append((pos, dur))
            pos += dur
        if out:  # hold the last note of the phrase a little longer
            last_pos, last_dur = out[-1]
            out[-1] = (last_pos, min(last_dur + 0.5, length - last_pos))
        return out

    def _chord_at(self, beat: float) -> Chord:
        for span in self.harmony:
            if span.start <= beat < span.start + span.duration:
                return span.chord
        return self.harmony[-1].chord

    def _lead_vocal(self, register: str) -> List[SungNote]:
        rng = self.rng
        centre = (
            pitch_in_range(self.tonic, 55, 66)
            if register == "male"
            else (pitch_in_range(self.tonic, 64, 75))
        )
        notes: List[SungNote] = []
        templates: Dict[str, Tuple[List[Tuple[float, float]], List[str]]] = {}
        hook = [self.choice(WORDS) for _ in range(4)]
        for section in self.sections:
            if "vocals" not in section.active:
                continue
            lift = (
                4
                if section.name == "chorus"
                else (2 if section.name == "prechorus" else 0)
            )
            low, high = centre - 7 + lift, centre + 6 + lift
            phrase_len = 8.0 if self.chance(0.7) else 16.0
            pitch = pitch_in_range(self._chord_at(section.start_beat).root, low, high)
            for start in np.arange(section.start_beat, section.end_beat, phrase_len):
                length = min(phrase_len, section.end_beat - start)
                if length < 2.0:
                    continue
                if (
                    section.name in templates
                    and length == phrase_len
                    and self.chance(0.65)
                ):
                    rhythm, words = templates[section.name]
                else:
                    rhythm = self._phrase_rhythm(length, section.energy)
                    if section.name == "chorus":
                        words = [hook[i % len(hook)] for i in range(len(rhythm))]
                    else:
                        words = [self.choice(WORDS) for _ in rhythm]
                    templates.setdefault(section.name, (rhythm, words))
                for (offset, dur), word in zip(rhythm, words):
                    beat = start + offset
                    chord = self._chord_at(beat)
                    strong = offset % 2.0 < 1e-6
                    r = rng.random()
                    if strong or r < 0.15:  # chord tone near the current pitch
                        options = [
                            pitch_in_range(pc, low, high, near=pitch)
                            for pc in chord.pcs
                        ]
                        pitch = min(
                            options, key=lambda p: abs(p - pitch) + rng.random() * 3
                        )
                    elif r < 0.75:  # scale step
                        direction = 1 if rng.random() < 0.5 else -1
                        if pitch + 2 > high:
                            direction = -1
                        elif pitch - 2 < low:
                            direction = 1
                        pitch = self._scale_step(pitch, direction)
                    pitch = int(np.clip(pitch, low, high))
                    notes.append(
                        SungNote(
                            self.t(beat),
                            dur * 0.95,
                            pitch,
                            self.vel(95, section.energy, 6),
                            word=word,
                        )
                    )
        return notes

    def _scale_step(self, pitch: int, direction: int) -> int:
        scale = MODES[self.mode]
        p = pitch + direction
        while (p - self.tonic) % 12 not in scale:
            p += direction
        return p

    def _backing_vocals(self) -> Optional[Part]:
        if not self.chance(0.5):
            return None
        part = Part(
            "backing",
            "vocals",
            int(self.choice(self.programs.backing_voices)),
            5,
            **self._mix_settings(0.6),
        )
        part.volume = int(self.rng.integers(60, 90))
        part.reverb = int(self.rng.integers(40, 90))
        previous: Optional[List[int]] = None
        for section in self.sections:
            if "vocals" not in section.active or section.name not in (
                "chorus",
                "outro",
            ):
                continue
            for span in self._spans_in(section):
                voicing = voice_chord(span.chord.pcs, 57, 76, previous)
                previous = voicing
                for p in voicing[1:]:
                    part.notes.append(
                        Note(
                            span.start,
                            span.duration * 0.95,
                            p,
                            self.vel(70, section.energy, 4),
                        )
                    )
        return part if part.notes else None


def compose_song(
    rng: np.random.Generator,
    duration: float,
    programs: ProgramSet = TRAIN_PROGRAMS,
    instrumental: bool = False,
) -> Song:
    """Compose a song of ``duration`` seconds.

    Args:
        rng: the only source of randomness (same state → same song).
        duration: rendered length in seconds (the plan covers at least this).
        programs: instrument set to draw from (:data:`TRAIN_PROGRAMS` or
            :data:`TEST_PROGRAMS`).
        instrumental: no lead or backing vocals.
    """
    if not duration > 0:
        raise ValueError(f"duration={duration} must be positive (seconds)")
    return _Composer(rng, float(duration), programs, instrumental).compose()
