"""Score tables flag what rests on fewer songs; museval's loader reads our track JSON."""

import json

import numpy as np
from museval.aggregate import TrackStore, json2df

from espnet2_ext.metrics.scoring import SystemScores
from espnet2_ext.reports.scores import museval_track_json
from espnet2_ext.reports.tables import (
    PARTIAL,
    counted,
    mean_of_defined,
    summary_table,
)
from espnet2_ext.zoo.card import parse_results

STEMS = ("vocals", "bass")


def test_counted_cells_and_means_of_defined_values():
    assert counted(4.214, 8, 8) == "4.21"
    assert counted(4.214, 6, 8) == "4.21 (6/8)"
    assert counted(float("nan"), 0, 8) == "n/a (0/8)"
    assert mean_of_defined([1.0, np.nan, 3.0]) == "2.00 (2/3)"
    assert mean_of_defined([1.0, 2.0]) == "1.50"
    assert mean_of_defined([np.nan]) == "n/a (0/1)"


def test_summary_table_flags_partial_values_and_still_parses_for_the_card():
    summaries = {
        "model": {
            "cSDR": {"vocals": 5.0, "bass": 7.0, "average": 6.0},
            "uSDR": {"vocals": 4.0, "bass": 6.0, "average": 5.0},
        },
        "mixture": {
            "cSDR": {"vocals": -1.0, "bass": -2.0, "average": -1.5},
            "uSDR": {"vocals": -1.5, "bass": -2.5, "average": -2.0},
        },
    }
    counts = {
        system: {"cSDR": {"vocals": 3, "bass": 4}, "uSDR": {"vocals": 4, "bass": 4}}
        for system in summaries
    }
    table = summary_table(
        summaries, STEMS, baseline="mixture", counts=counts, total=4
    ).splitlines()
    assert table[2] == f"|model|cSDR|5.00 (3/4)|7.00|6.00 {PARTIAL}|"
    assert table[3] == "|model|uSDR|4.00|6.00|5.00|"
    assert table[6] == f"|model − mixture|cSDR|6.00 {PARTIAL}|9.00|7.50 {PARTIAL}|"
    assert table[7] == "|model − mixture|uSDR|5.50|8.50|7.00|"
    # the model card reads the leading numbers of the flagged cells
    scores = parse_results("\n".join(table))
    assert scores["cSDR"] == {"vocals": 5.0, "bass": 7.0, "average": 6.0}


def test_track_json_is_museval_layout():
    nan = np.nan
    sdr = np.array([[1.5, nan, 2.25], [0.5, nan, -1.0]])
    scores = SystemScores(
        bss={m: sdr + k for k, m in enumerate(("SDR", "ISR", "SIR", "SAR"))},
        usdr=np.array([1.0, 2.0]),
        active_sdr=sdr,
    )
    text = museval_track_json(scores, STEMS, rate=8000)
    data = json.loads(text)
    store = TrackStore("song")  # museval's schema check of its own track files
    store.scores = data
    store.validate()
    frame = data["targets"][1]["frames"][2]
    assert frame == {
        "time": 2.0,
        "duration": 1.0,
        "metrics": {"SDR": -1.0, "SIR": 1.0, "SAR": 2.0, "ISR": 0.0},
    }
    df = json2df(data, "song")  # museval's own loader of these files
    sdr_rows = df[(df.metric == "SDR") & (df.target == "vocals")]
    assert sdr_rows.score.tolist()[::2] == [1.5, 2.25]
    assert np.isnan(sdr_rows.score.tolist()[1])
    assert set(df.track) == {"song"}
