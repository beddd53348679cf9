#!/usr/bin/env python3
"""The training curves of the priors, from ESPnet's train.log: a plot and a summary.

Every ``log_interval`` steps ESPnet logs the mean training loss of the last interval
(``Nepoch:train:a-bbatch: ... loss=X``) and after every epoch the validation loss of
the averaged (EMA) weights (``Nepoch results: ... [valid] loss=X``).

    local/loss_curve.py --log exp/prior_tones_prior/train.log tones \
        --log exp/prior_bursts_prior/train.log bursts --out images/loss_curve.png
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Dict, List, Tuple

_TRAIN = re.compile(r"(\d+)epoch:train:(\d+)-(\d+)batch:.*?\bloss=([-\d.e+]+)")
_VALID = re.compile(r"(\d+)epoch results:.*\[valid\].*?\bloss=([-\d.e+]+)")
_ITERS = re.compile(r"num_iters_per_epoch: (\d+)")


def parse(log: Path) -> Dict[str, List[Tuple[int, float]]]:
    """{'train': [(step, loss)], 'valid': [(step at the epoch's end, loss)]}."""
    text = log.read_text(errors="replace")
    per_epoch = None
    config = log.parent / "config.yaml"  # ESPnet writes it beside the log
    found = _ITERS.search(config.read_text() if config.exists() else text)
    if found:
        per_epoch = int(found.group(1))
    # keyed by step: the log of a resumed training holds every run one after the
    # other, and an epoch repeated after an interruption counts once, as last logged
    train: Dict[int, float] = {}
    valid: Dict[int, float] = {}
    last_step = {}
    for line in text.splitlines():
        m = _TRAIN.search(line)
        if m:
            epoch, _, end, loss = m.groups()
            offset = (int(epoch) - 1) * (per_epoch or 0)
            step = offset + int(end)
            train[step] = float(loss)
            last_step[int(epoch)] = step
            continue
        m = _VALID.search(line)
        if m:
            epoch = int(m.group(1))
            step = epoch * per_epoch if per_epoch else last_step.get(epoch, len(valid))
            valid[step] = float(m.group(2))
    return {"train": sorted(train.items()), "valid": sorted(valid.items())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--log", nargs=2, action="append", metavar=("TRAIN_LOG", "NAME"), required=True
    )
    p.add_argument("--out", type=Path, required=True, help="PNG of the curves")
    p.add_argument("--json", type=Path, default=None, help="also write the points")
    args = p.parse_args()
    curves = {name: parse(Path(log)) for log, name in args.log}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in curves.items():
        if curve["train"]:
            steps, losses = zip(*curve["train"])
            line = ax.plot(steps, losses, label=f"{name}: train (interval mean)")[0]
            if curve["valid"]:
                vs, vl = zip(*curve["valid"])
                ax.plot(
                    vs, vl, "o--", color=line.get_color(), label=f"{name}: valid (EMA)"
                )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("DDPM loss (ε MSE)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(args.out)
    if args.json:
        args.json.write_text(json.dumps(curves, indent=1))
    for name, curve in curves.items():
        last_train = curve["train"][-1] if curve["train"] else None
        best_valid = min(curve["valid"], key=lambda v: v[1]) if curve["valid"] else None
        print(f"{name}: last train {last_train}, best valid {best_valid}")


if __name__ == "__main__":
    main()
