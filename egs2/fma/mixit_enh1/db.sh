# Where the corpora are.
# FMA: the folder holding fma_<subset>/ (fma_small, fma_medium, fma_large or fma_full,
# each NNN/NNNNNN.mp3) and, optionally, fma_metadata/tracks.csv
# (https://github.com/mdeff/fma).
FMA=${FMA:-downloads/fma}
# MUSDB18-HQ: the folder holding train/ and test/ (the uncompressed WAV release,
# https://zenodo.org/records/3338373); its validation songs choose the kept outputs.
MUSDB18HQ=${MUSDB18HQ:-downloads/musdb18hq}
