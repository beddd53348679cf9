"""Rendering: soundfont checks, FluidSynth calls, espeak-ng singing, mixing helpers."""

import shutil

import numpy as np
import pytest

from espnet2_ext.datagen.compose import (
    TEST_PROGRAMS,
    TRAIN_PROGRAMS,
    Note,
    Part,
    SungNote,
)
from espnet2_ext.datagen.render import (
    DEFAULT_TEST_SOUNDFONT,
    DEFAULT_TRAIN_SOUNDFONT,
    STEM_GAIN_DB,
    EspeakSinger,
    MissingDependencyError,
    _frame_f0,
    active_rms,
    balance_stems,
    bus_gain,
    check_programs,
    pan_mono,
    parts_to_midi,
    render_midi,
    require_soundfont,
    require_tool,
    soundfont_presets,
    stereo_reverb,
)

FS = 44100
needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not DEFAULT_TEST_SOUNDFONT.exists(),
    reason="needs fluidsynth and the TimGM6mb soundfont",
)
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng")


@pytest.mark.parametrize("soundfont", [DEFAULT_TRAIN_SOUNDFONT, DEFAULT_TEST_SOUNDFONT])
def test_soundfonts_define_every_program_the_sets_use(soundfont):
    if not soundfont.exists():
        pytest.skip(f"{soundfont} not installed")
    presets = soundfont_presets(str(soundfont))
    for programs in (TRAIN_PROGRAMS, TEST_PROGRAMS):
        melodic = programs.bass + programs.keys + programs.guitars + programs.pads
        melodic += programs.leads + programs.backing_voices
        assert {(0, p) for p in melodic} <= presets
        assert {(128, k) for k in programs.drum_kits} <= presets


def test_missing_tool_names_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingDependencyError, match="apt-get install .*fluidsynth"):
        require_tool("fluidsynth")
    with pytest.raises(MissingDependencyError, match="apt-get install .*espeak-ng"):
        require_tool("espeak-ng")


def test_missing_or_bad_soundfont_names_the_debian_package(tmp_path):
    with pytest.raises(MissingDependencyError, match="fluid-soundfont-gm"):
        require_soundfont(tmp_path / "FluidR3_GM.sf2")
    with pytest.raises(MissingDependencyError, match="timgm6mb-soundfont"):
        require_soundfont(tmp_path / "TimGM6mb.sf2")
    bogus = tmp_path / "bogus.sf2"
    bogus.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    with pytest.raises(MissingDependencyError, match="not a SoundFont 2"):
        require_soundfont(bogus)


@needs_fluidsynth
def test_missing_preset_is_refused():
    kit = Part(
        "drums", "drums", program=99, channel=9, pan=0, volume=100, reverb=0, chorus=0
    )
    with pytest.raises(ValueError, match=r"\(128, 99\)"):
        check_programs([kit], DEFAULT_TEST_SOUNDFONT)


@needs_fluidsynth
def test_fluidsynth_render_is_deterministic_and_depends_on_the_soundfont():
    if not DEFAULT_TRAIN_SOUNDFONT.exists():
        pytest.skip("needs both soundfonts")
    notes = [Note(0.0, 0.9, 60 + k, 100) for k in (0, 4, 7)]
    part = Part(
        "comp", "other", 0, 1, pan=-1.0, volume=110, reverb=0, chorus=0, notes=notes
    )
    midi = parts_to_midi([part], bpm=120.0)
    a = render_midi(midi, DEFAULT_TEST_SOUNDFONT, FS)
    b = render_midi(midi, DEFAULT_TEST_SOUNDFONT, FS)
    c = render_midi(midi, DEFAULT_TRAIN_SOUNDFONT, FS)
    assert np.array_equal(a, b)
    assert np.abs(a).max() > 1e-3
    # Hard left: the right channel carries (almost) nothing.
    assert np.sqrt(np.mean(a[:, 1] ** 2)) < 0.05 * np.sqrt(np.mean(a[:, 0] ** 2))
    corr = np.corrcoef(a[:, 0], c[:, 0])[0, 1]
    assert corr < 0.9, "two different soundfonts must not give the same piano"


@needs_espeak
def test_singer_hits_pitch_and_timing():
    """A 0.75 s A3 then a 0.75 s E4: f0 within the vibrato depth, silence around."""
    singer = EspeakSinger("en-us+m3")
    notes = [
        SungNote(1.0, 1.5, 57, 100, word="la"),
        SungNote(2.5, 1.5, 64, 100, word="oh"),
    ]
    y = singer.sing(notes, bpm=120.0, num_samples=3 * FS, rng=np.random.default_rng(0))
    assert y.shape == (3 * FS,) and y.dtype == np.float32
    for start, pitch in ((0.5, 57), (1.25, 64)):
        seg = y[int((start + 0.3) * FS) : int((start + 0.3) * FS) + 2048].astype(float)
        f0, periodicity = _frame_f0(seg, FS, 60.0, 800.0)
        target = 440.0 * 2 ** ((pitch - 69) / 12)
        assert periodicity > 0.7
        assert abs(1200 * np.log2(f0 / target)) < 60, (pitch, f0, target)
    level = np.abs(y)
    assert (
        level[: int(0.35 * FS)].max() < 1e-3
    )  # the lead-in consonant is at most 80 ms
    assert level[int(2.1 * FS) :].max() < 1e-3  # nothing after the last note ends


def test_pan_and_reverb():
    x = np.zeros(FS, dtype=np.float64)
    x[100] = 1.0
    left = pan_mono(x, -1.0)
    assert left.shape == (FS, 2) and np.allclose(left[:, 1], 0.0, atol=1e-12)
    centre = pan_mono(x, 0.0)
    assert np.allclose(centre[:, 0], centre[:, 1])
    wet = stereo_reverb(centre, np.random.default_rng(0), FS, wet=0.3)
    tail = wet[FS // 10 :]
    assert np.sqrt(np.mean(tail**2)) > 1e-4  # a room tail after the impulse
    assert np.corrcoef(tail[:, 0], tail[:, 1])[0, 1] < 0.5  # decorrelated channels


def test_balance_stems_sets_relative_levels_and_headroom():
    rng = np.random.default_rng(0)
    t = np.arange(4 * FS) / FS
    raw = {
        "vocals": 0.001 * np.sin(2 * np.pi * 440 * t),
        "bass": 0.9 * np.sin(2 * np.pi * 55 * t),
        "drums": 0.05 * rng.standard_normal(t.size),
        "other": 0.2 * np.sin(2 * np.pi * 660 * t),
    }
    raw = {k: np.stack([v, v], axis=1) for k, v in raw.items()}
    for seed in range(5):
        out = balance_stems(raw, np.random.default_rng(seed))
        peak = np.abs(sum(out.values())).max()
        assert 0.6 - 1e-6 <= peak <= 0.95 + 1e-6
        ref = active_rms(out["other"][: 3 * FS], FS)
        for stem in ("vocals", "bass", "drums"):
            diff = 20 * np.log10(active_rms(out[stem][: 3 * FS], FS) / ref)
            lo = STEM_GAIN_DB[stem][0] - STEM_GAIN_DB["other"][1]
            hi = STEM_GAIN_DB[stem][1] - STEM_GAIN_DB["other"][0]
            assert lo - 0.5 <= diff <= hi + 0.5, (stem, diff)


def test_bus_gain_obeys_its_static_curve_and_leaves_quiet_parts_alone():
    t = np.arange(2 * FS) / FS
    amp = np.where(t < 1.0, 0.1, 1.0)
    mix = np.stack([amp * np.sin(2 * np.pi * 220 * t)] * 2, axis=1)
    gain = bus_gain(mix, FS, threshold_db=-14.0, ratio=4.0)
    assert gain.shape == (2 * FS,) and np.all((gain > 0) & (gain <= 1.0))
    assert np.allclose(gain[: int(0.95 * FS)], 1.0)  # -20 dB is under the threshold
    out = np.abs(mix * gain[:, None])
    static = 10 ** ((-14.0 + 14.0 / 4.0) / 20)  # 0 dB in → -3.5 dB out
    assert out[FS:].max() <= static * 1.01
    assert out[int(1.5 * FS) :].max() >= static * 0.95  # reduced, not muted
