# Where the corpora are (only for --data real). VCTK: the folder holding
# wav48_silence_trimmed/ (VCTK-Corpus-0.92, https://datashare.ed.ac.uk/handle/10283/3443).
# FSDKaggle2018: the folder holding FSDKaggle2018.audio_train/, .audio_test/ and .meta/
# (https://zenodo.org/records/2552860).
VCTK=${VCTK:-downloads/VCTK-Corpus-0.92}
FSD18=${FSD18:-downloads/FSDKaggle2018}
