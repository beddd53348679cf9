"""The Standard MIDI File writer: encoding, round trip, validation, and FluidSynth reads it."""

import shutil

import numpy as np
import pytest

from espnet2_ext.datagen.midi import MidiFile, decode_varlen, encode_varlen, read_midi
from espnet2_ext.datagen.render import DEFAULT_TEST_SOUNDFONT, render_midi


@pytest.mark.parametrize(
    "value, encoded",
    [
        (0, b"\x00"),
        (0x40, b"\x40"),
        (0x7F, b"\x7f"),
        (0x80, b"\x81\x00"),
        (0x2000, b"\xc0\x00"),
        (0x3FFF, b"\xff\x7f"),
        (0x100000, b"\xc0\x80\x00"),
        (0x0FFFFFFF, b"\xff\xff\xff\x7f"),
    ],
)
def test_varlen_matches_the_smf_specification_examples(value, encoded):
    assert encode_varlen(value) == encoded
    assert decode_varlen(encoded, 0) == (value, len(encoded))


def test_varlen_rejects_out_of_range():
    with pytest.raises(ValueError, match="out of range"):
        encode_varlen(-1)
    with pytest.raises(ValueError, match="out of range"):
        encode_varlen(1 << 28)


def test_round_trip_keeps_every_event_and_orders_release_before_restrike():
    midi = MidiFile(ticks_per_beat=96)
    conductor = midi.add_track("conductor")
    conductor.tempo(90.0)
    track = midi.add_track("piano")
    track.program_change(2, 5)
    track.control_change(2, 10, 100)
    track.note(2, 60, 90, start=0, duration=96)
    track.note(2, 60, 70, start=96, duration=48)  # same pitch re-struck at tick 96
    track.pitch_bend(2, -8192, tick=10)
    division, events = read_midi(midi.to_bytes())
    assert division == 96
    tempo = [e for e in events if e.status == 0xFF and e.data[0] == 0x51][0]
    assert int.from_bytes(tempo.data[1:], "big") == round(60_000_000 / 90.0)
    channel = [(e.tick, e.status, tuple(e.data)) for e in events if e.status < 0xF0]
    assert channel == [
        (0, 0xC2, (5,)),
        (0, 0xB2, (10, 100)),
        (0, 0x92, (60, 90)),
        (10, 0xE2, (0, 0)),
        (96, 0x82, (60, 0)),  # the release comes first at the shared tick
        (96, 0x92, (60, 70)),
        (144, 0x82, (60, 0)),
    ]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda t: t.note(16, 60, 90, 0, 10), "channel"),
        (lambda t: t.note(0, 128, 90, 0, 10), "pitch"),
        (lambda t: t.note(0, 60, 0, 0, 10), "velocity"),
        (lambda t: t.note(0, 60, 90, -1, 10), "negative"),
        (lambda t: t.note(0, 60, 90, 0, 0), "duration"),
        (lambda t: t.pitch_bend(0, 9000), "pitch bend"),
        (lambda t: t.time_signature(4, 3), "denominator"),
    ],
)
def test_invalid_events_raise_with_the_reason(call, message):
    track = MidiFile().add_track()
    with pytest.raises(ValueError, match=message):
        call(track)


def test_empty_file_and_bad_division_raise():
    with pytest.raises(ValueError, match="at least one track"):
        MidiFile().to_bytes()
    with pytest.raises(ValueError, match="ticks_per_beat"):
        MidiFile(ticks_per_beat=0)


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs fluidsynth")
def test_fluidsynth_plays_our_file_at_the_written_tempo():
    """One snare hit on beat 3 at 150 BPM must sound at 0.8 s, not at 120 BPM's 1.0 s."""
    midi = MidiFile()
    midi.add_track().tempo(150.0)
    midi.add_track().note(9, 38, 127, start=midi.beats_to_ticks(2.0), duration=48)
    audio = render_midi(midi, DEFAULT_TEST_SOUNDFONT, num_samples=44100 * 2)
    assert audio.shape == (88200, 2) and audio.dtype == np.float32
    onset = np.nonzero(np.abs(audio).max(axis=1) > 1e-4)[0][0] / 44100
    assert abs(onset - 0.8) < 0.01, onset
