"""Head selection: votes on a planted 12-output model, collisions, decoder surgery."""

import pytest
import torch

from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.enh.head_selection import (
    HeadVoteCounter,
    decoder_row_indices,
    select_heads,
    select_heads_in_state_dict,
)
from espnet2_ext.enh.separator.bs_locoformer_separator import BSLocoformerSeparator

NUM_OUT = 12
LENGTH = 1000


def _stems(g, silent=()):
    """Four stereo stems [S, C, T]; the named ones are silent."""
    stems = torch.randn(4, 2, LENGTH, generator=g)
    for name in silent:
        stems[MUSDB_STEMS.index(name)] = 0.0
    return stems


def _planted_outputs(g, stems, plant):
    """12 outputs [N, C, T]: output plant[s] ≈ stem s (15 dB), the rest noise."""
    out = torch.randn(NUM_OUT, 2, LENGTH, generator=g)
    for s, head in plant.items():
        out[head] = stems[s] + 0.18 * torch.randn(2, LENGTH, generator=g)
    return out


def test_planted_model_gives_planted_heads():
    g = torch.Generator().manual_seed(0)
    heads = {0: 7, 1: 2, 2: 10, 3: 5}  # vocals, bass, drums, other
    counter = HeadVoteCounter(num_outputs=NUM_OUT)
    silent_plan = [(), ("bass",), ("drums", "vocals"), (), ("other",), ()]
    for silent in silent_plan:
        stems = _stems(g, silent)
        active = {s: h for s, h in heads.items() if MUSDB_STEMS[s] not in silent}
        choice = counter.update(_planted_outputs(g, stems, active), stems)
        expected = [heads[s] if s in active else -1 for s in range(4)]
        assert choice.tolist() == [expected]
    # inactive stems did not vote
    assert counter.counts.sum(1).tolist() == [5, 5, 5, 5]
    selection = select_heads(counter.counts)
    assert selection.heads == (7, 2, 10, 5)
    assert selection.first_choice == selection.heads and selection.moved == {}
    assert selection.as_dict()["heads"] == dict(zip(MUSDB_STEMS, (7, 2, 10, 5)))


def test_batched_update_and_activity_threshold():
    g = torch.Generator().manual_seed(1)
    stems = torch.stack([_stems(g), _stems(g)])  # [B, S, C, T]
    # bass of chunk 1 at about -61 dB (channel 0) relative to the mixture: inactive
    # (the mixture is dominated by the other stems; the bass moves it by < 0.02 dB)
    mixture_energy = stems[1, [0, 2, 3], 0].sum(0).pow(2).sum()
    bass = stems[1, 1]
    stems[1, 1] = bass * torch.sqrt(
        10 ** (-6.1) * mixture_energy / bass[0].pow(2).sum()
    )
    plant = {0: 1, 1: 3, 2: 5, 3: 7}
    est = torch.stack([_planted_outputs(g, stems[b], plant) for b in range(2)])
    counter = HeadVoteCounter(num_outputs=NUM_OUT)
    choice = counter.update(est, stems)
    assert choice.tolist() == [[1, 3, 5, 7], [1, -1, 5, 7]]
    assert counter.num_chunks == 2
    # at -59 dB the same stem is active and votes
    stems[1, 1] *= 10 ** (2 / 20)
    assert HeadVoteCounter(num_outputs=NUM_OUT).update(est, stems)[1, 1] != -1


def test_collision_is_resolved_on_a_planted_model():
    # output 3 is vocals when vocals are on, bass when vocals are off: both stems
    # pick output 3 most often; bass must move to its next most frequent (8)
    g = torch.Generator().manual_seed(2)
    counter = HeadVoteCounter(num_outputs=NUM_OUT)
    for _ in range(6):  # no bass
        stems = _stems(g, ("bass",))
        counter.update(_planted_outputs(g, stems, {0: 3, 2: 0, 3: 5}), stems)
    for _ in range(4):  # no vocals
        stems = _stems(g, ("vocals",))
        counter.update(_planted_outputs(g, stems, {1: 3, 2: 0, 3: 5}), stems)
    for _ in range(3):  # all four
        stems = _stems(g)
        counter.update(_planted_outputs(g, stems, {0: 3, 1: 8, 2: 0, 3: 5}), stems)
    assert counter.counts[1, 3] == 4 and counter.counts[1, 8] == 3
    selection = select_heads(counter.counts)
    assert selection.first_choice == (3, 3, 0, 5)
    assert selection.heads == (3, 8, 0, 5)
    assert selection.moved == {"bass": (3, 8)}
    assert any(
        "output 3 is the most frequent for vocals, bass" in n for n in selection.notes
    )


def test_collision_resolution_maximises_total_votes():
    counts = torch.tensor(
        [
            [50, 49, 0, 0, 0],  # stem a: 0 first, 1 nearly as often
            [30, 0, 5, 0, 0],  # stem b: 0 first, 2 rarely
            [0, 0, 0, 0, 0],  # stem c: never active
        ]
    )
    selection = select_heads(counts, ("a", "b", "c"))
    # a -> 1, b -> 0 (79 votes) beats a -> 0, b -> 2 (55 votes)
    assert selection.heads[:2] == (1, 0)
    assert len(set(selection.heads)) == 3
    assert selection.moved["a"] == (0, 1)
    assert any("c: no votes" in n for n in selection.notes)


def test_decoder_row_indices_layout():
    # rows (glu ri n m f) with N=3, M=1, w=1: value/gate × re/im × 3 outputs
    assert decoder_row_indices([2, 0], 3, 1, 1).tolist() == [2, 0, 5, 3, 8, 6, 11, 9]
    rows = decoder_row_indices([1], 2, 2, 3)  # N=2, M=2, w=3
    assert rows.tolist() == [6, 7, 8, 9, 10, 11, 18, 19, 20, 21, 22, 23] + [
        30,
        31,
        32,
        33,
        34,
        35,
        42,
        43,
        44,
        45,
        46,
        47,
    ]


TINY = dict(
    input_dim=9,
    bands=(2, 3, 4),
    n_layers=1,
    emb_dim=8,
    ffn_hidden_dim=8,
    n_heads=2,
    norm_groups=2,
)


@pytest.mark.parametrize("channels", [1, 2])
def test_selected_state_dict_loads_strictly_and_reproduces_the_heads(channels):
    torch.manual_seed(0)
    big = BSLocoformerSeparator(num_spk=NUM_OUT, num_channels=channels, **TINY).eval()
    small = BSLocoformerSeparator(num_spk=4, num_channels=channels, **TINY).eval()
    heads = [7, 2, 10, 5]
    state = select_heads_in_state_dict(big.state_dict(), heads, NUM_OUT, channels)
    small.load_state_dict(state, strict=True)
    shape = (2, 6, channels, 9) if channels == 2 else (2, 6, 9)
    x = torch.randn(*shape, dtype=torch.complex64)
    ilens = torch.tensor([6, 6])
    with torch.no_grad():
        big_out, _, _ = big(x, ilens)
        small_out, _, _ = small(x, ilens)
    for s, h in enumerate(heads):
        torch.testing.assert_close(small_out[s], big_out[h])


def test_state_dict_selection_with_espnet_prefix_and_errors():
    big = BSLocoformerSeparator(num_spk=NUM_OUT, num_channels=2, **TINY)
    prefixed = {f"separator.{k}": v for k, v in big.state_dict().items()}
    out = select_heads_in_state_dict(prefixed, [0, 1, 2, 3], NUM_OUT, 2)
    key = "separator.model.decoder.heads.2.out.weight"
    assert out[key].shape[0] == 4 * 4 * 2 * 4  # 2·2·N·M·w with w = 4
    # rows (glu ri n (m f)): keeping outputs 0..3 keeps the first 4 of each block
    blocks = prefixed[key].reshape(2, 2, NUM_OUT, 2 * 4, *prefixed[key].shape[1:])
    assert torch.equal(out[key], blocks[:, :, :4].reshape(out[key].shape))
    assert torch.equal(
        out["separator.model.encoder.encoders.0.proj.weight"],
        prefixed["separator.model.encoder.encoders.0.proj.weight"],
    )
    with pytest.raises(ValueError, match="distinct"):
        select_heads_in_state_dict(prefixed, [1, 1, 2, 3], NUM_OUT, 2)
    with pytest.raises(ValueError, match="not a multiple"):
        select_heads_in_state_dict(prefixed, [0, 1, 2, 3], 5, 2)
    with pytest.raises(ValueError, match="BS-Locoformer"):
        select_heads_in_state_dict({"a.weight": torch.zeros(3)}, [0], 2, 1)
    with pytest.raises(ValueError, match="distinct heads"):
        HeadVoteCounter(num_outputs=3)
