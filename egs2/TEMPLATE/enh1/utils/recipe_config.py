#!/usr/bin/env python3
"""Small questions the recipe driver asks about configs, data and models.

Light on purpose (YAML and hashlib; no torch): the driver runs it on the login node.

  recipe_config.py get CONFIG KEY [KEY ...]     one line per key (dotted keys; a list
                                                prints space-separated; missing: empty)
  recipe_config.py model_stems CONFIG           the model's stem names, in output order
  recipe_config.py stems_args CONFIG STEM ...   training options that carry the stems
                                                into the config (``--stems``, and the
                                                output count where it differs)
  recipe_config.py stats_key --config C [--args "..."] [--write F] FILE ...
                                                key of the statistics folder: a hash of
                                                the data files' content and the config
                                                keys collect_stats depends on
  recipe_config.py paper_size CONFIG [--args "..."]
                                                a description when the config is a
                                                paper-size run (nothing otherwise)
  recipe_config.py download SOURCE DIR          a pack, folder or hub id made usable in
                                                DIR (links to its config.yaml and .pth);
                                                prints the .pth's name
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

#: Config keys that decide what ``collect_stats`` writes (the shapes of the data items
#: after the preprocessor of the validation pass); training-only keys (schedule,
#: optimiser, model size) are not among them, so experiments that differ only there
#: share one statistics folder.
STATS_KEYS = (
    "preprocessor",
    "preprocessor_conf",
    "use_preprocessor",
    "sample_rate",
    "num_spk",
    "stems",
    "allow_variable_data_keys",
    "speech_volume_normalize",
    "rir_scp",
    "noise_scp",
)

#: The smallest paper model (BS-Locoformer small: 4 blocks, D = 96) and a step count
#: beyond which a CPU run takes days.
PAPER_MIN_BLOCKS = 4
PAPER_MIN_EMB_DIM = 96
CPU_MAX_STEPS = 20000


def load(path: str) -> Dict:
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict):
        raise SystemExit(f"{path}: not a YAML mapping")
    return config


def lookup(config: Dict, key: str):
    value = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def show(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def option_values(args: str, keys: Sequence[str]) -> List[List[str]]:
    """The ``--key value …`` groups of a command-line string whose key is in ``keys``."""
    tokens = shlex.split(args or "")
    groups, current = [], None
    for token in tokens:
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0].replace("-", "_")
            current = [token] if name in keys else None
            if current is not None:
                groups.append(current)
        elif current is not None:
            current.append(token)
    return groups


def model_stems(config: Dict) -> List[str]:
    stems = config.get("stems") or lookup(config, "preprocessor_conf.stems")
    return [str(s) for s in stems] if stems else []


def stems_args(config: Dict, stems: Sequence[str]) -> List[str]:
    """Options for enh_train that make the model's outputs ``stems``, in that order."""
    n = len(stems)
    args = ["--stems", *stems]
    if config.get("num_spk") is not None and int(config["num_spk"]) != n:
        args += ["--num_spk", str(n)]
    separator_spk = lookup(config, "separator_conf.num_spk")
    if separator_spk is not None and int(separator_spk) != n:
        args += ["--separator_conf", f"num_spk={n}"]
    if config.get("preprocessor") == "music_dynamic_mixing":
        # without its own list, the preprocessor draws the config's stems
        current = lookup(config, "preprocessor_conf.stems") or config.get("stems")
        if current is None or [str(s) for s in current] != list(stems):
            args += ["--preprocessor_conf", "stems=[" + ",".join(stems) + "]"]
    return args


def stats_key(config: Dict, args: str, files: Sequence[str]) -> Dict:
    """What the statistics depend on, and its hash (``key``)."""
    inputs = {
        "config": {k: config.get(k) for k in STATS_KEYS if k in config},
        "args": option_values(args, STATS_KEYS),
        "files": {},
    }
    digest = hashlib.sha256()
    for name in files:
        path = Path(name)
        if not path.is_file():
            raise SystemExit(f"stats_key: {name} not found (run the data stages first)")
        file_hash = hashlib.sha256(path.read_bytes()).hexdigest()
        inputs["files"][name] = file_hash
    digest.update(json.dumps(inputs, sort_keys=True, default=str).encode())
    return {"key": digest.hexdigest()[:12], **inputs}


def paper_size(config: Dict, args: str) -> Optional[str]:
    sep = config.get("separator_conf") or {}
    blocks = int(sep.get("n_layers", 0) or 0)
    emb = int(sep.get("emb_dim", 0) or 0)
    epochs = config.get("max_epoch")
    iters = config.get("num_iters_per_epoch")
    for group in option_values(args, ("max_epoch", "num_iters_per_epoch")):
        if len(group) == 2:
            name = group[0][2:].replace("-", "_")
            value = int(group[1])
            epochs, iters = (value, iters) if name == "max_epoch" else (epochs, value)
    steps = int(epochs) * int(iters) if epochs and iters else None
    reasons = []
    if blocks >= PAPER_MIN_BLOCKS or emb >= PAPER_MIN_EMB_DIM:
        reasons.append(f"{blocks} blocks, D = {emb}")
    if steps is not None and steps >= CPU_MAX_STEPS:
        reasons.append(f"{steps:,} steps")
    return ", ".join(reasons) if reasons else None


def download(source: str, folder: Path) -> str:
    from espnet2_ext.zoo import resolve_source

    files = resolve_source(source)
    folder.mkdir(parents=True, exist_ok=True)
    for target, name in (
        (files.train_config, "config.yaml"),
        (files.model_file, files.model_file.name),
    ):
        link = folder / name
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            raise SystemExit(
                f"{link} exists and is not a link made by --download_model: move it "
                "away or choose another --enh_tag"
            )
        link.symlink_to(Path(target).resolve())
    (folder / "download_source.txt").write_text(f"{source}\n", encoding="utf-8")
    return files.model_file.name


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("get")
    p.add_argument("config")
    p.add_argument("keys", nargs="+")
    p = sub.add_parser("model_stems")
    p.add_argument("config")
    p = sub.add_parser("stems_args")
    p.add_argument("config")
    p.add_argument("stems", nargs="+")
    p = sub.add_parser("stats_key")
    p.add_argument("--config", required=True)
    p.add_argument("--args", default="")
    p.add_argument("--write", default=None)
    p.add_argument("files", nargs="*")
    p = sub.add_parser("paper_size")
    p.add_argument("config")
    p.add_argument("--args", default="")
    p = sub.add_parser("download")
    p.add_argument("source")
    p.add_argument("folder", type=Path)
    a = parser.parse_args(argv)

    if a.command == "get":
        config = load(a.config)
        for key in a.keys:
            print(show(lookup(config, key)))
    elif a.command == "model_stems":
        print(" ".join(model_stems(load(a.config))))
    elif a.command == "stems_args":
        print(" ".join(stems_args(load(a.config), a.stems)))
    elif a.command == "stats_key":
        result = stats_key(load(a.config), a.args, a.files)
        if a.write:
            Path(a.write).parent.mkdir(parents=True, exist_ok=True)
            Path(a.write).write_text(json.dumps(result, indent=2) + "\n")
        print(result["key"])
    elif a.command == "paper_size":
        reason = paper_size(load(a.config), a.args)
        if reason:
            print(reason)
    elif a.command == "download":
        print(download(a.source, a.folder))


if __name__ == "__main__":
    sys.exit(main())
