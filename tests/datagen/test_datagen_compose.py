"""Procedural composition: determinism, arrangement rules, ranges, program sets."""

import numpy as np
import pytest

from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.datagen.compose import (
    BEATS_PER_BAR,
    TEST_PROGRAMS,
    TRAIN_PROGRAMS,
    ProgramSet,
    build_chord,
    compose_song,
    voice_chord,
)


def song(seed, duration=30.0, programs=TRAIN_PROGRAMS, instrumental=False):
    return compose_song(np.random.default_rng(seed), duration, programs, instrumental)


def test_same_seed_same_song_other_seed_other_song():
    a, b, c = song(3), song(3), song(4)
    assert a.summary() == b.summary()
    assert [p.notes for p in a.parts] == [p.notes for p in b.parts]
    assert a.lead_vocal == b.lead_vocal
    assert a.summary() != c.summary()


def test_songs_vary_in_tempo_key_mode_and_form():
    songs = [song(s) for s in range(30)]
    assert len({round(s.bpm) for s in songs}) > 15
    assert len({s.tonic for s in songs}) >= 8
    assert {s.mode for s in songs} == {"major", "minor"}
    assert len({tuple(sec.name for sec in s.sections) for s in songs}) >= 4
    assert len({s.groove for s in songs}) >= 4


@pytest.mark.parametrize("duration", [2.0, 3.0, 30.0])
def test_every_stem_sounds_within_the_rendered_duration(duration):
    for seed in range(40):
        s = song(seed, duration)
        end = duration * s.bpm / 60.0
        for stem in MUSDB_STEMS:
            parts = s.stem_parts(stem)
            starts = [n.start for p in parts for n in p.notes]
            if stem == "vocals":
                starts += [n.start for n in s.lead_vocal]
            assert any(t < end for t in starts), (seed, stem, s.summary()["sections"])


def test_some_sections_leave_a_stem_out():
    """Real songs have stems that pause; the plans must contain such sections."""
    silent = 0
    for seed in range(30):
        for sec in song(seed).sections:
            silent += len(set(MUSDB_STEMS) - sec.active)
    assert silent > 10


def test_sections_and_harmony_tile_the_song():
    s = song(11)
    beat = 0.0
    for sec in s.sections:
        assert sec.start_beat == beat
        beat = sec.end_beat
    assert beat * 60.0 / s.bpm >= s.duration
    covered = sum(span.duration for span in s.harmony)
    assert covered == pytest.approx(sum(sec.bars for sec in s.sections) * BEATS_PER_BAR)


def test_parts_are_valid_midi_and_registers_make_sense():
    for seed in range(10):
        s = song(seed)
        for part in s.parts:
            assert all(
                0 <= n.pitch <= 127 and 1 <= n.velocity <= 127 for n in part.notes
            )
            assert all(n.duration > 0 and n.start >= 0 for n in part.notes)
            assert part.is_drums == (part.stem == "drums")
        bass = np.median([n.pitch for n in s.stem_parts("bass")[0].notes])
        voice = np.median([n.pitch for n in s.lead_vocal])
        assert bass + 12 < voice
        assert all(n.word.isalpha() for n in s.lead_vocal)


def test_test_split_draws_from_its_own_program_set():
    held_out = set(TEST_PROGRAMS.bass) - set(TRAIN_PROGRAMS.bass)
    assert held_out, "the test set must hold out some bass programs"
    assert set(TEST_PROGRAMS.drum_kits) - set(TRAIN_PROGRAMS.drum_kits)
    assert not {v for v, _ in TEST_PROGRAMS.singers} & {
        v for v, _ in TRAIN_PROGRAMS.singers
    }
    for seed in range(20):
        s = song(seed, programs=TEST_PROGRAMS)
        assert s.program_set == "test"
        assert s.singer in {v for v, _ in TEST_PROGRAMS.singers}
        by_name = {p.name: p for p in s.parts}
        assert by_name["drums"].program in TEST_PROGRAMS.drum_kits
        assert by_name["bass"].program in TEST_PROGRAMS.bass
        allowed = set(TEST_PROGRAMS.keys + TEST_PROGRAMS.guitars + TEST_PROGRAMS.pads)
        allowed |= set(TEST_PROGRAMS.leads)
        assert all(p.program in allowed for p in s.stem_parts("other"))


def test_instrumental_songs_have_no_vocals():
    for seed in range(10):
        s = song(seed, instrumental=True)
        assert s.lead_vocal == [] and s.stem_parts("vocals") == []
        assert all("vocals" not in sec.active for sec in s.sections)


def test_chords_and_voicings():
    # C major: V is G-B-D; A minor with a raised leading tone: V is E-G#-B.
    assert build_chord(0, "major", 4, seventh=False, major_five=False).pcs == (7, 11, 2)
    assert build_chord(9, "minor", 4, seventh=False, major_five=True).pcs == (4, 8, 11)
    voicing = voice_chord((7, 11, 2), 50, 76, previous=[60, 64, 67])
    assert sorted(p % 12 for p in voicing) == [2, 7, 11]
    assert all(50 <= p <= 76 for p in voicing)
    assert abs(np.mean(voicing) - np.mean([60, 64, 67])) <= 6


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="duration"):
        song(0, duration=0.0)
    with pytest.raises(ValueError, match="bass"):
        ProgramSet("x", (0,), (), (0,), (24,), (48,), (61,), (52,), (("en", "male"),))
    with pytest.raises(ValueError, match="register"):
        ProgramSet(
            "x", (0,), (33,), (0,), (24,), (48,), (61,), (52,), (("en", "alto"),)
        )
