"""Preprocessing of single-source training audio for diffusion priors."""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import numpy as np
from espnet2.train.preprocessor import AbsPreprocessor


class PriorPreprocessor(AbsPreprocessor):
    """Crop, down-mix and level-normalise one source; map its class name to an index.

    The priors of seeds/001 model 4 s clips at 16 kHz whose RMS lies in −25 … −20 dBFS
    (the level of the sources in the separation task), so a crop is rescaled to a random
    RMS in that range in training (the middle of it otherwise).

    Args:
        train: training mode (random crops and levels) or not (deterministic).
        segment_length: samples per example; longer signals are cropped (at random in
            training, from the start otherwise), shorter ones zero-padded (at a random
            offset in training, at the end otherwise). None keeps the length.
        rms_db_range: [low, high] RMS level in dBFS after normalisation; None keeps the
            level of the data.
        silence_rms_db: crops quieter than this are left unscaled (silence is not
            blown up).
        categories: class names; the index of ``category`` in this list is its label.
        downmix: average multi-channel signals to mono (else they are an error).
        speech_name: the data key of the source.
    """

    def __init__(
        self,
        train: bool,
        segment_length: Optional[int] = 64000,
        rms_db_range: Optional[Sequence[float]] = (-25.0, -20.0),
        silence_rms_db: float = -60.0,
        categories: Sequence[str] = (),
        downmix: bool = True,
        speech_name: str = "speech_ref1",
    ):
        super().__init__(train)
        if segment_length is not None and segment_length < 1:
            raise ValueError(
                f"segment_length={segment_length} must be positive or null"
            )
        if rms_db_range is not None:
            rms_db_range = tuple(float(v) for v in rms_db_range)
            if len(rms_db_range) != 2 or rms_db_range[0] > rms_db_range[1]:
                raise ValueError(
                    f"rms_db_range={rms_db_range} must be [low, high] with "
                    "low <= high, e.g. [-25, -20]"
                )
        if len(set(categories)) != len(categories):
            raise ValueError(f"categories has duplicates: {list(categories)}")
        self.segment_length = segment_length
        self.rms_db_range = rms_db_range
        self.silence_rms_db = float(silence_rms_db)
        self.categories = {name: index for index, name in enumerate(categories)}
        self.downmix = bool(downmix)
        self.speech_name = speech_name

    def _fit_length(self, x: np.ndarray) -> np.ndarray:
        target = self.segment_length
        if target is None or len(x) == target:
            return x
        if len(x) > target:
            start = np.random.randint(0, len(x) - target + 1) if self.train else 0
            return x[start : start + target]
        offset = np.random.randint(0, target - len(x) + 1) if self.train else 0
        out = np.zeros(target, dtype=x.dtype)
        out[offset : offset + len(x)] = x
        return out

    def _normalise(self, x: np.ndarray) -> np.ndarray:
        if self.rms_db_range is None:
            return x
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        if rms <= 10.0 ** (self.silence_rms_db / 20.0):
            return x
        low, high = self.rms_db_range
        target_db = np.random.uniform(low, high) if self.train else 0.5 * (low + high)
        return x * (10.0 ** (target_db / 20.0) / rms)

    def __call__(
        self, uid: str, data: Dict[str, Union[str, np.ndarray]]
    ) -> Dict[str, np.ndarray]:
        if self.speech_name in data:
            x = np.asarray(data[self.speech_name])
            if x.ndim == 2:
                if not self.downmix and x.shape[1] > 1:
                    raise ValueError(
                        f"{uid}: {x.shape[1]}-channel audio for a mono prior; set "
                        "preprocessor_conf.downmix: true"
                    )
                x = x.mean(axis=1)
            x = self._normalise(self._fit_length(x.astype(np.float32)))
            data[self.speech_name] = x.astype(np.float32)
        if "category" in data:
            name = data["category"]
            if not isinstance(name, str):
                name = str(np.asarray(name).reshape(-1)[0])
            name = name.strip()
            if name not in self.categories:
                raise ValueError(
                    f"{uid}: category {name!r} is not in preprocessor_conf.categories "
                    f"({sorted(self.categories)})"
                )
            data["category"] = np.array([self.categories[name]], dtype=np.int64)
        return data
