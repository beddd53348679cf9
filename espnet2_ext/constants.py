"""Constants shared across the package (stem order, rates)."""

#: MUSDB18-HQ stems in the fixed order the models output them (spk1 … spk4).
MUSDB_STEMS = ("vocals", "bass", "drums", "other")

#: Sampling rate of MUSDB18-HQ and FMA audio.
MUSIC_SAMPLE_RATE = 44100
