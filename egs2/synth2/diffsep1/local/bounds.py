#!/usr/bin/env python3
"""Reference separations of the test mixtures that the samplers are compared with.

* ``oracle_irm``: the ideal ratio mask |S_n|² / Σ_m |S_m|² on an STFT (n_fft 256, hop
  64, Hann), applied to the mixture — an oracle bound that uses the true sources;
* ``wiener_lti``: the ideal *linear time-invariant* filter for the two classes, the
  Wiener gain P_1(f) / (P_1(f) + P_2(f)) from the classes' mean power spectra measured
  on the training clips — what frequency content alone can separate (the classes
  overlap in frequency, so little);
* ``mixture``: the mixture itself as every estimate (SI-SNRi 0 by definition).

Each is written as a separation run would be (``<out>/<name>/wavs/<n>/<key>.wav``,
``spk<n>.scp``), to be scored by ``pyscripts/score.py``.

    local/bounds.py --data data --out exp/separate_prior
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List

import numpy as np
import soundfile as sf
import torch

from espnet2_ext.utils.audio_io import write_audio_atomic, write_scp_atomic
from espnet2_ext.utils.scp import read_scp

CLASSES = ("tones", "bursts")


def _read(path: str) -> np.ndarray:
    audio, _ = sf.read(path, dtype="float64")
    return audio


def mean_power_spectrum(scp: Path, n_fft: int) -> np.ndarray:
    """Mean |rFFT|² of n_fft-sample Hann frames (hop n_fft / 2) over a wav.scp → [f]."""
    window = np.hanning(n_fft)
    total, count = np.zeros(n_fft // 2 + 1), 0
    for path in read_scp(scp).values():
        x = _read(path)
        for start in range(0, len(x) - n_fft + 1, n_fft // 2):
            total += np.abs(np.fft.rfft(window * x[start : start + n_fft])) ** 2
            count += 1
    return total / count


def oracle_irm(sources: np.ndarray, n_fft: int = 256, hop: int = 64) -> np.ndarray:
    """sources [n, t] → IRM estimates [n, t] from their mixture."""
    x = torch.from_numpy(sources)
    window = torch.hann_window(n_fft, dtype=torch.float64)
    spec = torch.stft(x, n_fft, hop, window=window, return_complex=True)
    power = spec.abs() ** 2
    mask = power / power.sum(0, keepdim=True).clamp(min=1e-30)
    out = torch.istft(
        spec.sum(0, keepdim=True) * mask, n_fft, hop, window=window, length=x.shape[-1]
    )
    return out.numpy()


def wiener_lti(mixture: np.ndarray, gains: List[np.ndarray]) -> np.ndarray:
    """mixture [t], per-class gains on a length-t rFFT grid → estimates [n, t]."""
    spec = np.fft.rfft(mixture)
    return np.stack([np.fft.irfft(spec * g, n=len(mixture)) for g in gains])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--test", default="test")
    args = p.parse_args()
    test = args.data / args.test
    mixtures = read_scp(test / "wav.scp")
    refs = [read_scp(test / f"spk{n + 1}.scp") for n in range(len(CLASSES))]
    rate = sf.info(next(iter(mixtures.values()))).samplerate
    n_fft = 512
    spectra = [
        mean_power_spectrum(args.data / f"{c}_train" / "wav.scp", n_fft)
        for c in CLASSES
    ]
    total = np.sum(spectra, axis=0)
    entries: Dict[str, List[list]] = {
        name: [[] for _ in CLASSES] for name in ("oracle_irm", "wiener_lti", "mixture")
    }
    for key, mix_path in mixtures.items():
        mixture = _read(mix_path)
        sources = np.stack([_read(r[key]) for r in refs])
        freqs = np.fft.rfftfreq(len(mixture))  # the mixture's grid, cycles/sample
        grid = np.fft.rfftfreq(n_fft)
        gains = [np.interp(freqs, grid, s / total) for s in spectra]
        estimates = {
            "oracle_irm": oracle_irm(sources),
            "wiener_lti": wiener_lti(mixture, gains),
            "mixture": np.stack([mixture] * len(CLASSES)),
        }
        for name, est in estimates.items():
            for n in range(len(CLASSES)):
                path = args.out / name / "wavs" / str(n + 1) / f"{key}.wav"
                write_audio_atomic(
                    path, est[n].astype(np.float32), rate, "wav", "FLOAT"
                )
                entries[name][n].append((key, path.resolve()))
    for name, lists in entries.items():
        for n, items in enumerate(lists):
            write_scp_atomic(args.out / name / f"spk{n + 1}.scp", items)
    print(f"{args.out}: oracle_irm, wiener_lti, mixture for {len(mixtures)} mixtures")


if __name__ == "__main__":
    main()
