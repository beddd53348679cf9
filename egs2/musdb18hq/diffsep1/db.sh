# Where the corpora are (only for --data real). MUSDB18-HQ: the folder holding train/ and
# test/ (the uncompressed WAV release, https://zenodo.org/records/3338373).
MUSDB18HQ=${MUSDB18HQ:-downloads/musdb18hq}
