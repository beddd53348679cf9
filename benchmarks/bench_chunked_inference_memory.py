#!/usr/bin/env python3
"""Peak memory of whole-song chunked inference for 1, 5 and 10 minute stereo songs.

Each case runs in a fresh subprocess and reads its peak resident memory
(``resource.getrusage(...).ru_maxrss``) twice: after the song is in memory, and after
:func:`espnet2_ext.enh.inference.chunking.apply_chunked` has separated it into 4 stems
with a cheap separate_fn (a gain per stem), 12 s chunks, 6 s hop, 44.1 kHz. What chunked
inference adds on top of the song and of the unavoidable output buffer [1, 4, 2, T] is
the *overhead*; it should not grow with the song length.

For contrast, ``--naive`` cases separate every chunk in one call (all chunks
materialised at once, as one batch), which is what the chunked loop avoids.

Usage::

    .venv/bin/python benchmarks/bench_chunked_inference_memory.py
    .venv/bin/python benchmarks/bench_chunked_inference_memory.py --minutes 1 --naive
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

RATE = 44100
N_STEMS = 4
MIB = 1024**2


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def child(minutes: float, naive: bool) -> dict:
    import torch

    from espnet2_ext.enh.inference.chunking import (
        DEFAULT_CHUNK_SIZE,
        DEFAULT_HOP_SIZE,
        apply_chunked,
        chunk_starts,
    )

    torch.set_num_threads(1)
    gains = torch.tensor([0.5, 1.0, 1.5, 2.0])

    def separate(chunk):  # [b, C, L] -> [b, 4, C, L]
        return gains[None, :, None, None] * chunk[:, None]

    length = int(minutes * 60 * RATE)
    mixture = torch.randn(1, 2, length)
    # warm up torch's kernels on a tiny input so their one-off memory is in the baseline
    warm_up = torch.randn(1, 2, 3 * RATE)
    apply_chunked(separate, warm_up, chunk_size=RATE, hop_size=RATE // 2)
    del warm_up
    before = _peak_rss_bytes()
    start = time.perf_counter()
    if naive:
        starts = chunk_starts(length, DEFAULT_CHUNK_SIZE, DEFAULT_HOP_SIZE)
        chunks = torch.cat(
            [mixture[..., s : s + DEFAULT_CHUNK_SIZE] for s in starts]
        )  # every chunk at once: [K, C, L]
        estimates = separate(chunks)  # [K, 4, C, L]
        output = torch.zeros(1, N_STEMS, 2, length)
        for k, s in enumerate(starts):  # (rectangular overlap-add, for the memory only)
            output[..., s : s + DEFAULT_CHUNK_SIZE] += estimates[k]
        del chunks, estimates
    else:
        output = apply_chunked(
            separate,
            mixture,
            chunk_size=DEFAULT_CHUNK_SIZE,
            hop_size=DEFAULT_HOP_SIZE,
        )
    seconds = time.perf_counter() - start
    after = _peak_rss_bytes()
    output_bytes = output.numel() * output.element_size()
    return {
        "minutes": minutes,
        "method": "all chunks at once" if naive else "apply_chunked",
        "chunks": len(chunk_starts(length, DEFAULT_CHUNK_SIZE, DEFAULT_HOP_SIZE)),
        "song_mib": mixture.numel() * mixture.element_size() / MIB,
        "output_mib": output_bytes / MIB,
        "peak_before_mib": before / MIB,
        "peak_after_mib": after / MIB,
        "overhead_mib": (after - before - output_bytes) / MIB,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 5, 10])
    parser.add_argument(
        "--naive",
        type=float,
        nargs="*",
        default=[1, 5],
        help="song lengths (minutes) for the all-chunks-at-once contrast",
    )
    parser.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child_naive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.child_naive)))
        return

    cases = [(m, False) for m in args.minutes] + [(m, True) for m in args.naive]
    rows = []
    for minutes, naive in cases:
        command = [sys.executable, __file__, "--child", str(minutes)]
        command += ["--child_naive"] if naive else []
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"done: {rows[-1]['method']}, {minutes} min", file=sys.stderr)

    header = (
        f"{'song':>6} {'method':>20} {'chunks':>6} {'song MiB':>9} {'output MiB':>10} "
        f"{'peak before':>11} {'peak after':>10} {'overhead MiB':>12} {'time s':>7}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['minutes']:>4.0f} m {r['method']:>20} {r['chunks']:>6} "
            f"{r['song_mib']:>9.1f} {r['output_mib']:>10.1f} "
            f"{r['peak_before_mib']:>11.1f} {r['peak_after_mib']:>10.1f} "
            f"{r['overhead_mib']:>12.1f} {r['seconds']:>7.2f}"
        )
    chunked = [r for r in rows if r["method"] == "apply_chunked"]
    if len(chunked) > 1:
        first, last = chunked[0], chunked[-1]
        print(
            f"apply_chunked overhead, {last['minutes']:.0f} min vs "
            f"{first['minutes']:.0f} min: {last['overhead_mib']:.1f} / "
            f"{first['overhead_mib']:.1f} MiB = "
            f"{last['overhead_mib'] / first['overhead_mib']:.2f}x for a "
            f"{last['minutes'] / first['minutes']:.0f}x longer song"
        )
    for r in rows:
        if r["method"] != "apply_chunked":
            same = [c for c in chunked if c["minutes"] == r["minutes"]]
            if same:
                ratio = r["overhead_mib"] / same[0]["overhead_mib"]
                print(
                    f"all chunks at once, {r['minutes']:.0f} min: overhead "
                    f"{r['overhead_mib']:.1f} MiB = {ratio:.1f}x apply_chunked's"
                )


if __name__ == "__main__":
    main()
