"""Head selection: turn a MixIT-trained ``N``-output model into a stem model.

MixIT pre-training (seeds/002) leaves a model with 12 unlabelled outputs. To
fine-tune on MUSDB18-HQ, one output is kept per stem:

1. the validation songs are cut into chunks (6 s in the paper) and separated;
2. per chunk, the active stems get distinct outputs that maximise the summed SNR
   (channel 0), found exactly by the Hungarian algorithm (:mod:`~espnet2_ext.enh.
   loss.wrappers.assignment`, shared with MixIT); each such pair is one *vote*;
3. each stem takes the output it was assigned most often;
4. only those outputs' rows of the mask decoder's last convolution are kept, which
   gives a ``len(stems)``-output model whose outputs are the chosen ones, in stem
   order.

Nothing forces the most frequent outputs of different stems to differ. When they
collide, :func:`select_heads` gives the stems distinct outputs with the largest
total number of votes (again the Hungarian algorithm, on the vote matrix): with
two stems on one output, one keeps it and the other moves to an output it was also
often assigned (e.g. its next most frequent). The moves are reported.

Decoder layout (:class:`espnet2_ext.enh.layers.band_split.BandMaskHead`): the last
convolution of each band's head has ``2 · 2 · N · M · w`` output rows ordered
``(glu ri n m f)``: GLU half (value | gate), real/imaginary, source, audio channel,
bin. Keeping sources means keeping the matching rows in both GLU halves and both
real/imaginary parts.

Running this on data folders and writing the new model:
:mod:`espnet2_ext.enh.head_selection_run`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from einops import rearrange

from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.enh.loss.wrappers.assignment import (
    best_injective_assignment,
    pairwise_snr,
)

#: State-dict keys of the last decoder convolution of every band (any prefix, e.g.
#: ``separator.model.decoder.heads.7.out.weight`` in an ESPnet enh model).
DECODER_OUT_KEY = re.compile(r"(^|\.)decoder\.heads\.(\d+)\.out\.(weight|bias)$")


# --------------------------------------------------------------------------- votes
class HeadVoteCounter:
    """Counts, per stem, how often each output is its best match on a chunk.

    Args:
        num_outputs: outputs of the model (12 after MixIT).
        stem_names: stems in the order of the references (MUSDB order by default).
        channel: audio channel the SNRs are measured on (0, as in the paper).
        inactive_threshold_db: a stem is inactive on a chunk (and does not vote)
            when its energy is below this level relative to the chunk's mixture,
            the sum of the stems (the rule of the zero-reference loss).
        eps: added to the energies of the SNR.
    """

    def __init__(
        self,
        num_outputs: int = 12,
        stem_names: Sequence[str] = MUSDB_STEMS,
        channel: int = 0,
        inactive_threshold_db: float = -60.0,
        eps: float = 1e-8,
    ):
        if len(stem_names) == 0:
            raise ValueError("stem_names is empty")
        if len(set(stem_names)) != len(stem_names):
            raise ValueError(f"stem_names has duplicates: {list(stem_names)}")
        if num_outputs < len(stem_names):
            raise ValueError(
                f"a model with {num_outputs} outputs cannot give {len(stem_names)} "
                "stems distinct heads"
            )
        self.num_outputs = num_outputs
        self.stem_names = tuple(stem_names)
        self.channel = channel
        self.inactive_threshold_db = inactive_threshold_db
        self.eps = eps
        #: votes [S, N]: counts[s, n] = chunks where output n was stem s's match
        self.counts = torch.zeros(len(self.stem_names), num_outputs, dtype=torch.long)
        #: summed SNR (dB) of the matched pairs [S, N], for reporting
        self.snr_sum = torch.zeros(
            len(self.stem_names), num_outputs, dtype=torch.float64
        )
        self.num_chunks = 0

    @torch.no_grad()
    def update(self, estimates: torch.Tensor, stems: torch.Tensor) -> torch.Tensor:
        """Add the votes of a batch of chunks.

        Args:
            estimates: model outputs, ``[N, C, T]`` or ``[B, N, C, T]``.
            stems: references in ``stem_names`` order, ``[S, C, T]`` or
                ``[B, S, C, T]``.
        Returns:
            The chosen output per stem and chunk, ``[B, S]`` long (``-1`` for an
            inactive stem).
        """
        if estimates.dim() == 3:
            estimates, stems = estimates.unsqueeze(0), stems.unsqueeze(0)
        if estimates.dim() != 4 or stems.dim() != 4:
            raise ValueError(
                f"expected estimates [B, N, C, T] and stems [B, S, C, T], got "
                f"{tuple(estimates.shape)} and {tuple(stems.shape)}"
            )
        if estimates.shape[1] != self.num_outputs:
            raise ValueError(
                f"expected {self.num_outputs} outputs, got {estimates.shape[1]}"
            )
        if stems.shape[1] != len(self.stem_names):
            raise ValueError(
                f"expected {len(self.stem_names)} stems {self.stem_names}, got "
                f"{stems.shape[1]}"
            )
        if (
            estimates.shape[0] != stems.shape[0]
            or estimates.shape[2:] != stems.shape[2:]
        ):
            raise ValueError(
                f"estimates {tuple(estimates.shape)} and stems {tuple(stems.shape)} "
                "disagree in batch, channels or length"
            )
        if not 0 <= self.channel < stems.shape[2]:
            raise ValueError(f"channel {self.channel} not in {stems.shape[2]} channels")

        est = estimates[:, :, self.channel].to(torch.float64)  # [B, N, T]
        ref = stems[:, :, self.channel].to(torch.float64)  # [B, S, T]
        ref_energy = ref.pow(2).sum(dim=-1)  # [B, S]
        mix_energy = ref.sum(dim=1).pow(2).sum(dim=-1, keepdim=True)  # [B, 1]
        ratio = 10.0 ** (self.inactive_threshold_db / 10.0)
        active = ref_energy >= ratio * (mix_energy + self.eps)  # [B, S]

        snr = pairwise_snr(ref, est, eps=self.eps)  # [B, S, N]
        choice = torch.full(active.shape, -1, dtype=torch.long)
        for b in range(ref.shape[0]):
            rows = torch.nonzero(active[b].cpu()).flatten()
            if rows.numel() == 0:
                continue
            picked = best_injective_assignment(snr[b, rows].cpu())  # [S_active]
            choice[b, rows] = picked
            self.counts[rows, picked] += 1
            self.snr_sum[rows, picked] += snr[b, rows, picked].cpu()
        self.num_chunks += ref.shape[0]
        return choice


# ------------------------------------------------------------------------ decision
@dataclass
class HeadSelection:
    """Outcome of :func:`select_heads`.

    Attributes:
        heads: the output kept for each stem, in stem order.
        stem_names: the stems.
        counts: votes ``[S, N]``.
        first_choice: each stem's most frequent output (may repeat).
        moved: stems that did not get their first choice: ``stem -> (first, final)``.
        notes: human-readable lines on collisions and stems that never voted.
    """

    heads: Tuple[int, ...]
    stem_names: Tuple[str, ...]
    counts: torch.Tensor
    first_choice: Tuple[int, ...]
    moved: Dict[str, Tuple[int, int]] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    def as_dict(self) -> Dict[str, object]:
        """A JSON-friendly summary."""
        return {
            "heads": dict(zip(self.stem_names, self.heads)),
            "first_choice": dict(zip(self.stem_names, self.first_choice)),
            "votes": {
                s: self.counts[i].tolist() for i, s in enumerate(self.stem_names)
            },
            "moved": {s: list(v) for s, v in self.moved.items()},
            "notes": list(self.notes),
        }


def select_heads(
    counts: torch.Tensor, stem_names: Sequence[str] = MUSDB_STEMS
) -> HeadSelection:
    """Pick one distinct output per stem from the vote matrix.

    Each stem takes its most frequent output (ties: the lower index). If two stems
    pick the same output, the stems get the distinct outputs with the most votes in
    total (Hungarian algorithm on ``counts``), and the stems that moved are reported.

    Args:
        counts: votes ``[S, N]`` (e.g. :attr:`HeadVoteCounter.counts`), ``S <= N``.
        stem_names: names of the ``S`` stems.
    """
    counts = counts.detach().cpu().long()
    if counts.dim() != 2 or counts.shape[0] != len(stem_names):
        raise ValueError(
            f"counts must be [S, N] with S = {len(stem_names)} stems, got "
            f"{tuple(counts.shape)}"
        )
    num_stems, num_outputs = counts.shape
    if num_stems > num_outputs:
        raise ValueError(
            f"{num_stems} stems cannot get distinct heads out of {num_outputs} outputs"
        )
    stem_names = tuple(stem_names)
    notes = [
        f"{stem}: no votes (never active), its head is arbitrary"
        for stem, row in zip(stem_names, counts)
        if int(row.sum()) == 0
    ]
    first = tuple(int(i) for i in counts.argmax(dim=1))
    heads = first
    moved: Dict[str, Tuple[int, int]] = {}
    if len(set(first)) < num_stems:
        heads = tuple(int(i) for i in best_injective_assignment(counts.double()))
        for head in sorted(set(first)):
            sharing = [s for s, h in zip(stem_names, first) if h == head]
            if len(sharing) > 1:
                notes.append(
                    f"output {head} is the most frequent for {', '.join(sharing)}; "
                    "resolved by the most votes in total"
                )
        for s, (a, b) in enumerate(zip(first, heads)):
            if a != b:
                moved[stem_names[s]] = (a, b)
                notes.append(
                    f"{stem_names[s]}: output {a} ({int(counts[s, a])} votes) -> "
                    f"output {b} ({int(counts[s, b])} votes)"
                )
    return HeadSelection(
        heads=heads,
        stem_names=stem_names,
        counts=counts,
        first_choice=first,
        moved=moved,
        notes=notes,
    )


# ------------------------------------------------------------------ decoder surgery
def decoder_row_indices(
    heads: Sequence[int], num_outputs: int, num_channels: int, band_width: int
) -> torch.Tensor:
    """Rows of a band's last decoder conv that produce the chosen outputs.

    The conv has ``2 · 2 · N · M · w`` rows ordered ``(glu ri n m f)``; the result
    lists the rows of the outputs ``heads`` (in that order) in the same layout with
    ``n = len(heads)``, so the kept rows form a valid ``len(heads)``-output conv.

    Returns:
        ``[2 · 2 · len(heads) · M · w]`` long.
    """
    heads = list(heads)
    if any(not 0 <= h < num_outputs for h in heads):
        raise ValueError(f"heads {heads} out of range for {num_outputs} outputs")
    rows = torch.arange(4 * num_outputs * num_channels * band_width)
    rows = rearrange(
        rows,
        "(glu ri n m f) -> glu ri n m f",
        glu=2,
        ri=2,
        n=num_outputs,
        m=num_channels,
    )
    return rearrange(rows[:, :, heads], "glu ri n m f -> (glu ri n m f)")


def select_decoder_rows(
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    heads: Sequence[int],
    num_outputs: int,
    num_channels: int,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Keep the chosen outputs' rows of one band's last decoder conv.

    Args:
        weight: ``[4 · N · M · w, in, kernel]``; bias: ``[4 · N · M · w]`` or None.
        heads: outputs to keep, in the new output order.
        num_outputs: ``N``; num_channels: ``M`` (the band width ``w`` follows).
    Returns:
        ``(weight, bias)`` with ``4 · len(heads) · M · w`` rows (copies).
    """
    per_band = 4 * num_outputs * num_channels
    if weight.shape[0] % per_band != 0:
        raise ValueError(
            f"{weight.shape[0]} decoder rows are not a multiple of 2·2·N·M = "
            f"{per_band} (N={num_outputs} outputs, M={num_channels} channels); "
            "check num_outputs and num_channels"
        )
    rows = decoder_row_indices(
        heads, num_outputs, num_channels, weight.shape[0] // per_band
    ).to(weight.device)
    new_bias = None if bias is None else bias.detach()[rows].clone()
    return weight.detach()[rows].clone(), new_bias


def select_heads_in_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    heads: Sequence[int],
    num_outputs: int,
    num_channels: int,
) -> Dict[str, torch.Tensor]:
    """A state dict of the ``len(heads)``-output model, from an ``N``-output one.

    Every ``...decoder.heads.<k>.out.{weight,bias}`` (the last conv of each band) is
    cut to the chosen outputs' rows; all other entries are kept as they are, so the
    result loads strictly into the same architecture built with
    ``num_spk = len(heads)``.

    Raises:
        ValueError: no decoder entries found (not a BS-Locoformer state dict).
    """
    if len(set(heads)) != len(heads):
        raise ValueError(f"heads must be distinct, got {list(heads)}")
    out: Dict[str, torch.Tensor] = {}
    found = 0
    for key, value in state_dict.items():
        if DECODER_OUT_KEY.search(key):
            found += 1
            out[key], _ = select_decoder_rows(
                value, None, heads, num_outputs, num_channels
            )
        else:
            out[key] = value
    if found == 0:
        raise ValueError(
            "no '...decoder.heads.<k>.out.weight/bias' entries in the state dict: "
            "head selection needs a BS-Locoformer model"
        )
    return out
