#!/usr/bin/env python3
"""Score separated sources: SI-SNR and its improvement (permutation search by default).

    local/score.py --mix data/test/wav.scp --ref data/test/spk1.scp data/test/spk2.scp \
        --est exp/sep/spk1.scp exp/sep/spk2.scp --out exp/sep/scoring --name paper
writes <out>/scores.json (per mixture) and <out>/summary.json; prints a Markdown row.
"""

import argparse
import json
from pathlib import Path

from espnet2.utils.types import str2bool

from espnet2_ext.diffusion.evaluation import score_scps, summarize


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mix", required=True)
    p.add_argument("--ref", nargs="+", required=True)
    p.add_argument("--est", nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", default="")
    p.add_argument("--permutation", type=str2bool, default=True)
    args = p.parse_args()
    results = score_scps(args.mix, args.ref, args.est, permutation=args.permutation)
    summary = summarize(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scores.json").write_text(json.dumps(results, indent=1))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    per_source = " | ".join(
        f"{summary[f'si_snri_spk{n + 1}']:.2f}" for n in range(len(args.ref))
    )
    print(
        f"| {args.name} | {summary['num_mixtures']} | {summary['si_snr']:.2f} | "
        f"{summary['si_snri']:.2f} | {per_source} |"
    )


if __name__ == "__main__":
    main()
