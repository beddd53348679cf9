"""Constants shared across the package (stem order, rates, option names)."""

#: MUSDB18-HQ stems in the fixed order the models output them (spk1 … spk4).
MUSDB_STEMS = ("vocals", "bass", "drums", "other")

#: Sampling rate of MUSDB18-HQ and FMA audio.
MUSIC_SAMPLE_RATE = 44100

#: Cross-fade windows of the chunked overlap-add (the first is the default).
WINDOWS = ("hann", "triangular", "rectangular")

#: Candidate grids of multi-step inference (the first is the default).
MULTISTEP_GRIDS = ("uniform", "narrowing")
