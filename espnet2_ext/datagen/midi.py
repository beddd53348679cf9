"""A minimal Standard MIDI File (SMF) writer, and a reader for checking what it wrote.

Only what the data generators need: format-1 files with a tempo track and one track per
part, note on/off, program change, control change, pitch bend and the tempo / end-of-track
meta events. Times are in ticks (``ticks_per_beat`` per quarter note); helpers convert from
beats. Written from the SMF 1.0 specification (MIDI Manufacturers Association).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Tuple, Union

#: Event kinds ordered so that, at equal ticks, note-offs come before controller/program
#: changes and those before note-ons (a re-struck pitch is released before it sounds again,
#: and the program is set before the note that needs it).
_ORDER_NOTE_OFF = 0
_ORDER_META = 1
_ORDER_CONTROL = 2
_ORDER_NOTE_ON = 3


def encode_varlen(value: int) -> bytes:
    """Encode a non-negative integer as a MIDI variable-length quantity (7 bits a byte)."""
    if value < 0 or value > 0x0FFFFFFF:
        raise ValueError(
            f"variable-length quantity {value} is out of range [0, 0x0FFFFFFF]; "
            "SMF delta times must be non-negative and below 2**28 ticks"
        )
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


def decode_varlen(data: bytes, pos: int) -> Tuple[int, int]:
    """Decode a variable-length quantity at ``data[pos:]``; returns (value, next position)."""
    value = 0
    for _ in range(4):
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos
    raise ValueError("variable-length quantity longer than 4 bytes: not a valid SMF")


def _check_7bit(name: str, value: int) -> None:
    if not 0 <= value <= 127:
        raise ValueError(
            f"{name}={value} must lie in [0, 127] (a 7-bit MIDI data byte)"
        )


def _check_channel(channel: int) -> None:
    if not 0 <= channel <= 15:
        raise ValueError(
            f"channel={channel} must lie in [0, 15] (0-based; GM percussion is 9)"
        )


@dataclass
class MidiTrack:
    """One track: a list of (tick, order, raw event bytes) sorted when written.

    Args:
        name: written as a track-name meta event (FF 03) when not empty.
    """

    name: str = ""
    events: List[Tuple[int, int, bytes]] = field(default_factory=list)

    def _add(self, tick: int, order: int, data: bytes) -> None:
        if tick < 0:
            raise ValueError(f"event tick {tick} is negative; ticks count from 0")
        self.events.append((int(tick), order, data))

    def note(
        self, channel: int, pitch: int, velocity: int, start: int, duration: int
    ) -> None:
        """A note from tick ``start`` lasting ``duration`` ticks (at least one tick)."""
        _check_channel(channel)
        _check_7bit("pitch", pitch)
        if not 1 <= velocity <= 127:
            raise ValueError(
                f"velocity={velocity} must lie in [1, 127] (0 means note-off in MIDI)"
            )
        if duration < 1:
            raise ValueError(f"note duration {duration} ticks must be at least 1 tick")
        self._add(start, _ORDER_NOTE_ON, bytes([0x90 | channel, pitch, velocity]))
        self._add(start + duration, _ORDER_NOTE_OFF, bytes([0x80 | channel, pitch, 0]))

    def program_change(self, channel: int, program: int, tick: int = 0) -> None:
        """Select ``program`` (0-based GM number) on ``channel``."""
        _check_channel(channel)
        _check_7bit("program", program)
        self._add(tick, _ORDER_CONTROL, bytes([0xC0 | channel, program]))

    def control_change(
        self, channel: int, controller: int, value: int, tick: int = 0
    ) -> None:
        """Controller change, e.g. 7 = volume, 10 = pan, 64 = sustain, 91 = reverb."""
        _check_channel(channel)
        _check_7bit("controller", controller)
        _check_7bit("value", value)
        self._add(tick, _ORDER_CONTROL, bytes([0xB0 | channel, controller, value]))

    def pitch_bend(self, channel: int, value: int, tick: int = 0) -> None:
        """Pitch bend, ``value`` in [-8192, 8191] (0 = centre)."""
        _check_channel(channel)
        if not -8192 <= value <= 8191:
            raise ValueError(f"pitch bend {value} must lie in [-8192, 8191]")
        raw = value + 8192
        self._add(tick, _ORDER_CONTROL, bytes([0xE0 | channel, raw & 0x7F, raw >> 7]))

    def tempo(self, bpm: float, tick: int = 0) -> None:
        """Set-tempo meta event (FF 51), stored as microseconds per quarter note."""
        if not 1.0 <= bpm <= 1000.0:
            raise ValueError(f"tempo {bpm} BPM is outside [1, 1000]")
        usec = int(round(60_000_000 / bpm))
        self._add(tick, _ORDER_META, b"\xff\x51\x03" + usec.to_bytes(3, "big"))

    def time_signature(self, numerator: int, denominator: int, tick: int = 0) -> None:
        """Time-signature meta event (FF 58); ``denominator`` a power of two."""
        if denominator < 1 or denominator & (denominator - 1):
            raise ValueError(f"time-signature denominator {denominator} is not 2**k")
        power = denominator.bit_length() - 1
        self._add(tick, _ORDER_META, bytes([0xFF, 0x58, 0x04, numerator, power, 24, 8]))

    def to_bytes(self) -> bytes:
        """The ``MTrk`` chunk: events sorted by (tick, order), delta-time encoded."""
        body = bytearray()
        if self.name:
            name = self.name.encode("ascii", "replace")
            body += b"\x00\xff\x03" + encode_varlen(len(name)) + name
        last = 0
        # sorted() is stable, so events of equal tick and order keep insertion order.
        for tick, _, data in sorted(self.events, key=lambda e: (e[0], e[1])):
            body += encode_varlen(tick - last) + data
            last = tick
        body += b"\x00\xff\x2f\x00"  # end of track
        return b"MTrk" + struct.pack(">I", len(body)) + bytes(body)


@dataclass
class MidiFile:
    """A format-1 Standard MIDI File.

    Args:
        ticks_per_beat: time division (ticks per quarter note), 1 … 32767.
    """

    ticks_per_beat: int = 480
    tracks: List[MidiTrack] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.ticks_per_beat <= 0x7FFF:
            raise ValueError(
                f"ticks_per_beat={self.ticks_per_beat} must lie in [1, 32767]"
            )

    def add_track(self, name: str = "") -> MidiTrack:
        track = MidiTrack(name=name)
        self.tracks.append(track)
        return track

    def beats_to_ticks(self, beats: float) -> int:
        return int(round(beats * self.ticks_per_beat))

    def to_bytes(self) -> bytes:
        if not self.tracks:
            raise ValueError("a MIDI file needs at least one track; call add_track()")
        header = b"MThd" + struct.pack(
            ">IHHH", 6, 1, len(self.tracks), self.ticks_per_beat
        )
        return header + b"".join(t.to_bytes() for t in self.tracks)

    def write(self, path: Union[str, Path]) -> None:
        Path(path).write_bytes(self.to_bytes())


@dataclass(frozen=True)
class ParsedEvent:
    """One event read back: absolute tick, track index, status byte and data bytes."""

    tick: int
    track: int
    status: int
    data: bytes


def read_midi(path_or_bytes: Union[str, Path, bytes]) -> Tuple[int, List[ParsedEvent]]:
    """Parse an SMF (no running status needed for our files, but it is handled).

    Returns ``(ticks_per_beat, events)``; meta events have status 0xFF and data
    ``type byte + payload``.
    """
    data = (
        path_or_bytes
        if isinstance(path_or_bytes, bytes)
        else Path(path_or_bytes).read_bytes()
    )
    if data[:4] != b"MThd":
        raise ValueError("not a Standard MIDI File: missing 'MThd' header")
    _, _, ntracks, division = struct.unpack(">IHHH", data[4:14])
    pos = 14
    events: List[ParsedEvent] = []
    for index in range(ntracks):
        if data[pos : pos + 4] != b"MTrk":
            raise ValueError(f"track {index}: missing 'MTrk' chunk")
        (length,) = struct.unpack(">I", data[pos + 4 : pos + 8])
        pos += 8
        end = pos + length
        tick = 0
        status = 0
        while pos < end:
            delta, pos = decode_varlen(data, pos)
            tick += delta
            if data[pos] & 0x80:
                status = data[pos]
                pos += 1
            if status == 0xFF:
                kind = data[pos]
                size, pos = decode_varlen(data, pos + 1)
                events.append(
                    ParsedEvent(
                        tick, index, status, bytes([kind]) + data[pos : pos + size]
                    )
                )
                pos += size
            elif status in (0xF0, 0xF7):
                size, pos = decode_varlen(data, pos)
                pos += size
            else:
                nbytes = 1 if status & 0xF0 in (0xC0, 0xD0) else 2
                events.append(
                    ParsedEvent(tick, index, status, data[pos : pos + nbytes])
                )
                pos += nbytes
        pos = end
    return division, events
