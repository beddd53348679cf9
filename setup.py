"""espnet2_ext: an ESPnet plugin for music source separation research."""

from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec((Path(__file__).parent / "espnet2_ext" / "version.py").read_text(), version)

# Ranges for users (GPU machines, newer Python). The pinned CPU install of this project's
# own machines is tools/setup_venv.sh with requirements/cpu-py311.lock.
install_requires = [
    "espnet>=202511",
    "torch>=2.4",
    "torch-complex>=0.4",
    "numpy>=1.24",
    "scipy>=1.10",
    "soundfile>=0.12",
    "museval>=0.4.1",
    "pyyaml>=6.0",
    "kaldiio>=2.18",
    "einops>=0.7",
    "tqdm>=4.60",
    "matplotlib>=3.7",
    "tensorboard>=2.10",
    "huggingface-hub>=0.20",
    "packaging>=21",
    "torchaudio>=2.1",
]

setup(
    name="espnet2_ext",
    version=version["__version__"],
    description="ESPnet plugin for music source separation: BS-Locoformer, MixIT, "
    "diffusion-prior separation and multi-step inference",
    long_description=(
        (Path(__file__).parent / "README.md").read_text(encoding="utf-8")
        if (Path(__file__).parent / "README.md").exists()
        else ""
    ),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["espnet2_ext", "espnet2_ext.*"]),
    # data files the code reads at run time (the model card's citations)
    package_data={"espnet2_ext.zoo": ["citations.bib"]},
    python_requires=">=3.10",
    install_requires=install_requires,
    extras_require={
        "test": ["pytest>=7", "build>=1.0"],
        "bench": ["bs-roformer", "demucs"],
    },
    entry_points={
        "console_scripts": [
            "espnet2-ext-separate = espnet2_ext.bin.separate:main",
        ],
    },
)
