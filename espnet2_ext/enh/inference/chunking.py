"""Whole-song inference by chunked overlap-add with a cross-fade window.

A separator trained on a few seconds of audio cannot take a whole song in one pass: the
attention cost and the activations grow with the length. :func:`apply_chunked` cuts the
song into chunks of ``chunk_size`` samples every ``hop_size`` samples, separates each
chunk, and adds the windowed estimates into one output buffer, divided by the sum of the
windows that covered each sample (the ``sum_weight`` normalisation of demucs'
overlap-add).

Decisions, and why:

* **Fixed stem order.** Output ``n`` of every chunk is added to output ``n`` of the
  song. ESPnet's ``SeparateSpeech`` re-orders each segment by PIT against the previous
  one; for a model with a fixed stem order (vocals, bass, drums, other) that can only
  do harm.
* **Windows sampled at half-sample offsets** (``w[n] = f((n + 1/2) / L)``): strictly
  positive, so every sample a chunk covers gets weight from it, and Hann and triangular
  windows still add up to a constant at ``hop = chunk / 2``.
* **Song edges.** Near the first and the last sample of the song there is no other chunk
  to cross-fade with, and the network saw the true start/end of the signal there, not a
  cut. The outer half of the first and of the last chunk's window is raised to the
  window's peak, so a window that is zero at its ends (a user tensor) is safe there too.
* **The last chunk is moved back** to end exactly at the song's end instead of running
  past it into zero padding: all chunks have the same length (they batch together) and
  the network never sees padding. A song shorter than one chunk is separated in one
  piece of its own length.
* **Memory.** At most ``batch_chunks`` chunks exist at a time and estimates are added
  in place into the output buffer; the samples before the next chunk's start are final
  and are divided by their total weight right away, computed from the (at most three)
  chunk windows. Nothing but the buffer ``[B, N, C, T]`` grows with the song length.
  The buffer lives on ``mixture``'s device: a long song may stay on the CPU while
  ``separate_fn`` moves each chunk to an accelerator.
* **Aligned tensors** (e.g. the references, for an oracle metric in multi-step
  inference) are cut with the same slices as the mixture and handed to ``separate_fn``
  beside it.

Shapes (einops legend): ``B`` songs in the batch, ``C`` audio channels, ``T`` samples of
the song, ``L`` samples of a chunk, ``N`` separated sources (stems), ``K`` chunks
separated together.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from einops import rearrange
from tqdm import tqdm

from espnet2_ext.constants import MUSIC_SAMPLE_RATE, WINDOWS

#: Chunk and hop of the MUSDB18-HQ recipe (seeds/002: 12 s chunks, 6 s hop), in samples.
DEFAULT_CHUNK_SIZE = 12 * MUSIC_SAMPLE_RATE
DEFAULT_HOP_SIZE = 6 * MUSIC_SAMPLE_RATE


#: ``separate_fn(chunk [K·B, C, L], *aligned_chunks) -> estimates [K·B, N, C, L]``
SeparateFn = Callable[..., torch.Tensor]


def make_window(name: str, length: int) -> torch.Tensor:
    """A cross-fade window of ``length`` samples, sampled at half-sample offsets.

    ``hann``: ``sin(pi (n + 1/2) / L) ** 2``; ``triangular``:
    ``1 - |2 (n + 1/2) / L - 1|``; ``rectangular``: ones. All are strictly positive and
    symmetric; Hann and triangular add up to exactly one at a hop of half an even
    length.

    Returns:
        float64 tensor [L]
    """
    if length < 1:
        raise ValueError(f"window length must be >= 1 sample, got {length}")
    position = (torch.arange(length, dtype=torch.float64) + 0.5) / length  # in (0, 1)
    if name == "hann":
        return torch.sin(math.pi * position) ** 2
    if name == "triangular":
        return 1.0 - (2.0 * position - 1.0).abs()
    if name == "rectangular":
        return torch.ones(length, dtype=torch.float64)
    raise ValueError(
        f"unknown window {name!r}: choose one of {WINDOWS} or pass a tensor"
    )


def chunk_starts(length: int, chunk_size: int, hop_size: int) -> List[int]:
    """First sample of every chunk that covers a song of ``length`` samples.

    The starts are ``0, hop, 2 hop, ...`` while a chunk fits; the last chunk is moved
    back so that it ends at the song's end (the starts stay strictly increasing). A song
    no longer than one chunk gives ``[0]``: one chunk of the song's own length
    (:func:`chunk_length`).
    """
    if length < 1:
        raise ValueError(f"the song must have at least one sample, got length {length}")
    if chunk_size < 1 or hop_size < 1:
        raise ValueError(
            f"chunk_size ({chunk_size}) and hop_size ({hop_size}) must be positive"
        )
    if hop_size > chunk_size:
        raise ValueError(
            f"hop_size ({hop_size}) is larger than chunk_size ({chunk_size}): samples "
            "between two chunks would never be separated; use hop_size <= chunk_size"
        )
    if length <= chunk_size:
        return [0]
    n_chunks = math.ceil((length - chunk_size) / hop_size) + 1
    starts = [i * hop_size for i in range(n_chunks)]
    starts[-1] = length - chunk_size
    return starts


def chunk_length(length: int, chunk_size: int) -> int:
    """Samples in each chunk of a song of ``length`` samples: min(length, chunk)."""
    return min(length, chunk_size)


def _check_window(window: Union[str, torch.Tensor], chunk_size: int) -> None:
    if isinstance(window, str):
        if window not in WINDOWS:
            raise ValueError(
                f"unknown window {window!r}: choose one of {WINDOWS} or pass a tensor"
            )
        return
    if not isinstance(window, torch.Tensor) or window.dim() != 1:
        raise ValueError(
            f"window must be a name from {WINDOWS} or a 1-D tensor, got {window!r}"
        )
    if window.numel() != chunk_size:
        raise ValueError(
            f"the window tensor has {window.numel()} samples; it needs chunk_size = "
            f"{chunk_size}"
        )
    if not bool(torch.isfinite(window).all()) or bool((window < 0).any()):
        raise ValueError("the window tensor must be finite and non-negative")
    if float(window.max()) <= 0.0:
        raise ValueError("the window tensor is all zeros; it needs a positive peak")


def _chunk_weights(
    window: Union[str, torch.Tensor], size: int, index: int, n_chunks: int
) -> torch.Tensor:
    """Cross-fade weights (float64 [L]) of chunk ``index`` out of ``n_chunks``.

    The outer half of the first and of the last chunk is held at the window's peak; a
    single chunk (the song is no longer than one chunk) is weighted uniformly.
    """
    if n_chunks == 1:
        return torch.ones(size, dtype=torch.float64)
    if isinstance(window, str):
        weights = make_window(window, size)
    else:
        weights = window.detach().to(device="cpu", dtype=torch.float64).clone()
    peak_at = int(torch.argmax(weights))
    peak = weights[peak_at].item()
    if index == 0:
        weights[:peak_at] = peak
    if index == n_chunks - 1:
        weights[peak_at:] = peak
    return weights


class _Layout:
    """Where the chunks of one song lie and how they are weighted.

    Holds at most three weight vectors [L] (first, interior, last chunk) and computes
    the total weight of any stretch of the song from them, so that no vector of the
    song's length is needed besides the output buffer.
    """

    def __init__(
        self,
        length: int,
        chunk_size: int,
        hop_size: int,
        window: Union[str, torch.Tensor],
    ) -> None:
        _check_window(window, chunk_size)
        self.length = length
        self.starts = chunk_starts(length, chunk_size, hop_size)
        self.size = chunk_length(length, chunk_size)
        self._window = window
        self._weights: Dict[tuple, torch.Tensor] = {}

    def weights(
        self,
        index: int,
        device: torch.device = torch.device("cpu"),
        dtype: torch.dtype = torch.float64,
    ) -> torch.Tensor:
        """[L] weights of chunk ``index`` (cached per position kind, device, dtype)."""
        kind = (index == 0, index == len(self.starts) - 1)
        key = kind + (str(device), dtype)
        if key not in self._weights:
            if kind + ("cpu", torch.float64) not in self._weights:
                self._weights[kind + ("cpu", torch.float64)] = _chunk_weights(
                    self._window, self.size, index, len(self.starts)
                )
            self._weights[key] = self._weights[kind + ("cpu", torch.float64)].to(
                device=device, dtype=dtype
            )
        return self._weights[key]

    def segment(self, index: int) -> Tuple[int, int]:
        """Samples ``[lo, hi)`` from chunk ``index``'s start to the next chunk's start.

        They are final once chunks ``0 .. index`` have been added: no later chunk
        reaches back before its own start.
        """
        lo = self.starts[index]
        if index + 1 < len(self.starts):
            return lo, self.starts[index + 1]
        return lo, self.length

    def segment_weight(self, index: int) -> torch.Tensor:
        """float64 [hi - lo]: total weight of the samples of :meth:`segment`."""
        lo, hi = self.segment(index)
        total = torch.zeros(hi - lo, dtype=torch.float64)
        j = index
        while j >= 0 and self.starts[j] + self.size > lo:  # chunks covering [lo, hi)
            start = self.starts[j]
            end = min(hi, start + self.size)
            total[: end - lo] += self.weights(j)[lo - start : end - start]
            j -= 1
        return total


def sum_of_weights(
    length: int,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    hop_size: int = DEFAULT_HOP_SIZE,
    window: Union[str, torch.Tensor] = "hann",
) -> torch.Tensor:
    """Total cross-fade weight that each of ``length`` samples receives (float64 [T]).

    For inspection and tests; :func:`apply_chunked` computes the same totals stretch by
    stretch and checks that they are positive before separating anything (a sample with
    a total of zero would be 0/0).
    """
    layout = _Layout(length, chunk_size, hop_size, window)
    return torch.cat([layout.segment_weight(i) for i in range(len(layout.starts))])


def apply_chunked(
    separate_fn: SeparateFn,
    mixture: torch.Tensor,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    hop_size: int = DEFAULT_HOP_SIZE,
    window: Union[str, torch.Tensor] = "hann",
    aligned: Sequence[torch.Tensor] = (),
    progress: bool = False,
    batch_chunks: int = 1,
    desc: Optional[str] = None,
) -> torch.Tensor:
    """Separate whole songs chunk by chunk and overlap-add the estimates.

    Args:
        separate_fn: ``separate_fn(chunk, *aligned_chunks) -> estimates``; ``chunk`` is
            [K·B, C, L] with ``K <= batch_chunks`` chunks stacked chunk-major
            (``(K B)``: rows 0..B-1 are the first chunk of every song), each aligned
            chunk is [K·B, ..., L] cut with the same slices, and ``estimates`` must be
            [K·B, N, C, L] in a fixed source order. Called under ``torch.no_grad()``.
        mixture: [B, C, T] songs.
        chunk_size: samples per chunk (default 12 s at 44.1 kHz).
        hop_size: samples between chunk starts, 1 ... chunk_size (default 6 s).
        window: ``"hann"``, ``"triangular"``, ``"rectangular"``, or a tensor
            [chunk_size].
        aligned: tensors [B, ..., T], cut along their last axis like the mixture.
        progress: show a tqdm progress bar over the chunks.
        batch_chunks: how many chunks ``separate_fn`` receives at once (bounds memory).
        desc: label of the progress bar.

    Returns:
        [B, N, C, T] estimates on ``mixture``'s device; their dtype is that of
        ``separate_fn``'s output promoted to at least float32 (bf16 and fp16 estimates
        are accumulated in float32).
    """
    if mixture.dim() != 3:
        raise ValueError(
            f"mixture must be [B, C, T] (batch, channels, samples), got shape "
            f"{tuple(mixture.shape)}; add the missing axes with unsqueeze"
        )
    if batch_chunks < 1:
        raise ValueError(f"batch_chunks must be >= 1, got {batch_chunks}")
    n_batch, n_chan, length = mixture.shape
    aligned = tuple(aligned)
    for i, extra in enumerate(aligned):
        if extra.dim() < 2 or extra.shape[0] != n_batch or extra.shape[-1] != length:
            raise ValueError(
                f"aligned[{i}] has shape {tuple(extra.shape)}; it must be [B, ..., T] "
                f"with B = {n_batch} and T = {length} like the mixture"
            )

    layout = _Layout(length, chunk_size, hop_size, window)
    starts, size = layout.starts, layout.size
    for index in range(len(starts)):  # checked before any (costly) separation
        total = layout.segment_weight(index)
        if not bool((total > 0).all()):
            first = layout.segment(index)[0] + int(torch.nonzero(total <= 0)[0])
            raise ValueError(
                f"sample {first} gets no weight from any chunk: the window is zero "
                f"where chunks meet (hop_size {hop_size}, chunk_size {chunk_size}); "
                "use a smaller hop_size or a window that is positive at its ends"
            )

    output: Optional[torch.Tensor] = None
    indices = list(range(len(starts)))
    groups = [
        indices[i : i + batch_chunks] for i in range(0, len(indices), batch_chunks)
    ]
    bar = tqdm(total=len(starts), desc=desc, unit="chunk", disable=not progress)
    with torch.no_grad():
        for group in groups:
            spans = [slice(starts[i], starts[i] + size) for i in group]
            chunk = torch.cat([mixture[..., span] for span in spans], dim=0)
            aligned_chunks = [
                torch.cat([extra[..., span] for span in spans], dim=0)
                for extra in aligned
            ]
            estimates = separate_fn(chunk, *aligned_chunks)
            n_rows = len(group) * n_batch
            if (
                not isinstance(estimates, torch.Tensor)
                or estimates.dim() != 4
                or estimates.shape[0] != n_rows
                or estimates.shape[2] != n_chan
                or estimates.shape[3] != size
            ):
                got = (
                    tuple(estimates.shape)
                    if isinstance(estimates, torch.Tensor)
                    else type(estimates).__name__
                )
                raise ValueError(
                    f"separate_fn returned {got} for a chunk of shape "
                    f"{tuple(chunk.shape)}; it must return [{n_rows}, N, {n_chan}, "
                    f"{size}] (chunk rows, sources, channels, samples)"
                )
            if output is None:
                output = torch.zeros(
                    n_batch,
                    estimates.shape[1],
                    n_chan,
                    length,
                    dtype=torch.promote_types(estimates.dtype, torch.float32),
                    device=mixture.device,
                )
            elif estimates.shape[1] != output.shape[1]:
                raise ValueError(
                    f"separate_fn returned {estimates.shape[1]} sources for one chunk "
                    f"and {output.shape[1]} for an earlier one; the count must be fixed"
                )
            per_chunk = rearrange(estimates, "(k b) n c l -> k b n c l", b=n_batch)
            for k, (index, span) in enumerate(zip(group, spans)):
                output[..., span].addcmul_(
                    per_chunk[k].to(device=output.device, dtype=output.dtype),
                    layout.weights(index, output.device, output.dtype),
                )
                # no later chunk reaches before this chunk's start: normalise the
                # samples up to the next start now, while they are warm in cache
                lo, hi = layout.segment(index)
                output[..., lo:hi] /= layout.segment_weight(index).to(
                    output.device, output.dtype
                )
            del chunk, aligned_chunks, estimates, per_chunk
            bar.update(len(group))
    bar.close()
    assert output is not None  # a song always has at least one chunk
    return output
