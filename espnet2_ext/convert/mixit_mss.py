#!/usr/bin/env python3
"""Convert the MixIT-MSS authors' BS-Locoformer checkpoints into espnet2_ext models.

The authors (Saijo & Bando, WASPAA 2025; code b-sigpro/mixit-mss, weights on the hub
as ``kohei0209/mixit_mss``) publish, per model, ``checkpoints/model.pth`` (the state
dict of their Lightning task) and ``merged_config.yaml`` (their Hydra/aiaccel config).
Two kinds:

* MixIT pre-trained models with 12 outputs (``mixit.*.12outputs``) and the same with 4
  outputs selected (``mixit.*.4outputs``);
* models fine-tuned on MUSDB18-HQ (``sup.musdb18hq.*``), 4 outputs.

Their 4-output models give the stems in the order **bass, drums, vocals, other** (their
data and head-selection scripts); ours are **vocals, bass, drums, other**
(:data:`espnet2_ext.constants.MUSDB_STEMS`). By default the converter re-orders the
outputs of a 4-output model (it selects the matching rows of every band's last decoder
convolution, :func:`espnet2_ext.enh.head_selection.select_heads_in_state_dict`) and
names the stems in ``config.yaml``; ``--stem_order theirs`` keeps their order.

Checkpoint layout (their code): the task holds ``model`` (their ``ModelWrapper``:
STFT, iSTFT and ``model``, the ``BSLocoformer``), so the network's parameters are under
``model.model.``; weight-averaged (SWA) files may put them under another prefix and add
``n_averaged``. The converter finds the prefix from the network's first parameter,
renames every network parameter, and ignores (and reports) only STFT window buffers and
``n_averaged``. Renaming (theirs → ours, under ``separator.model.``):

* ``band_split_module.band_split_module.{b}.0`` / ``.1`` →
  ``encoder.encoders.{b}.norm`` / ``.proj``;
* ``band_split_module.bandwise_decoding_module.{b}.0`` / ``.1`` / ``.2`` / ``.4`` →
  ``decoder.heads.{b}.norm`` / ``.fc1`` / ``.fc2`` / ``.out``;
* ``blocks.{i}.freq_path`` / ``blocks.{i}.frame_path`` → ``blocks.{i}.freq_path`` /
  ``blocks.{i}.time_path``, and inside a path:
* ``ffn_norm.1`` + ``ffn.1`` (the FFN *before* attention) → ``ffn1_norm`` + ``ffn1``;
* ``ffn_norm.0`` + ``ffn.0`` (the FFN after attention) → ``ffn2_norm`` + ``ffn2``;
* ``attn_norm.gamma``, ``attn.qkv.weight`` → the same names;
* ``attn.aggregate_heads.0.weight`` → ``attn.out_proj.weight``

(inside an FFN, ``conv1d``/``deconv1d`` keep their names). Feature orders of the band
encoder ``(f ri m)`` and decoder ``(glu ri n m f)`` are the same in both codes.

Their wrapper (``ModelWrapper.forward``) divides the mixture by the per-channel RMS of
its STFT magnitude (all frames), keeps the first ``L // hop`` of the ``L // hop + 1``
frames of the centred STFT, runs the network on them and inverts the masked spectrum
to the input length ``L``. ESPnet's STFT keeps every frame, and since the band
encoder's GroupNorm and the time attention see all frames they get, feeding the extra
frame changes every output sample (about 27 dB SNR from their output). The converter
therefore sets ``separator_conf.drop_last_frame: true``, with which our separator runs
the network on the same frames and ESPnet's STFT decoder inverts them to the input
length: a converted model computes their forward pass, up to float rounding
(``tests/convert/test_mixit_mss.py`` checks 2 s of stereo against an implementation of
their forward written from their code).

Usage::

    python -m espnet2_ext.convert.mixit_mss \
        --checkpoint model_weights/sup/sup.musdb18hq.bslocoformer-medium/\
checkpoints/model.pth --out exp/converted/bslocoformer-medium
    # merged_config.yaml is found next to checkpoints/; or give --config, or (without a
    # config) --size small|medium|large for the head and norm-group counts.

The output folder (``config.yaml``, ``model.pth``, ``conversion.yaml``) loads with
``espnet2_ext.api.load_model(folder)``, separates with
``espnet2-ext-separate -m folder``, and packs with ``python -m espnet2_ext.bin.pack``.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import yaml

from espnet2_ext.constants import MUSDB_STEMS, MUSIC_SAMPLE_RATE
from espnet2_ext.enh.layers.band_split import DEFAULT_BANDS
from espnet2_ext.enh.separator.bs_locoformer_separator import BS_LOCOFORMER_SIZES

logger = logging.getLogger(__name__)

#: Prefix of the separator network in our ESPnet enh model's state dict.
OUR_PREFIX = "separator.model."

#: The network's first parameter in their naming; its prefix locates the network.
THEIR_ANCHOR = "band_split_module.band_split_module.0.0.weight"

#: Their stem order for 4-output models (data and head-selection scripts).
THEIR_STEMS = ("bass", "drums", "vocals", "other")

#: Their STFT (every published config): n_fft 2048, hop 512, Hann window, 44.1 kHz.
THEIR_N_FFT = 2048
THEIR_HOP = 512

#: Their path names → ours.
_PATHS = {"freq_path": "freq_path", "frame_path": "time_path"}

#: (their name, our name) below the network prefixes; ``{…}`` are placeholders.
RENAME_RULES: Tuple[Tuple[str, str], ...] = (
    (
        "band_split_module.band_split_module.{band}.0.{param}",
        "encoder.encoders.{band}.norm.{param}",
    ),
    (
        "band_split_module.band_split_module.{band}.1.{param}",
        "encoder.encoders.{band}.proj.{param}",
    ),
    (
        "band_split_module.bandwise_decoding_module.{band}.0.{param}",
        "decoder.heads.{band}.norm.{param}",
    ),
    (
        "band_split_module.bandwise_decoding_module.{band}.1.{param}",
        "decoder.heads.{band}.fc1.{param}",
    ),
    (
        "band_split_module.bandwise_decoding_module.{band}.2.{param}",
        "decoder.heads.{band}.fc2.{param}",
    ),
    (
        "band_split_module.bandwise_decoding_module.{band}.4.{param}",
        "decoder.heads.{band}.out.{param}",
    ),
    # macaron FFNs: their list is built in reverse, ffn[-1] (= .1) runs first
    ("blocks.{layer}.{path}.ffn_norm.1.gamma", "blocks.{layer}.{path}.ffn1_norm.gamma"),
    ("blocks.{layer}.{path}.ffn_norm.0.gamma", "blocks.{layer}.{path}.ffn2_norm.gamma"),
    (
        "blocks.{layer}.{path}.ffn.1.{conv}.{param}",
        "blocks.{layer}.{path}.ffn1.{conv}.{param}",
    ),
    (
        "blocks.{layer}.{path}.ffn.0.{conv}.{param}",
        "blocks.{layer}.{path}.ffn2.{conv}.{param}",
    ),
    ("blocks.{layer}.{path}.attn_norm.gamma", "blocks.{layer}.{path}.attn_norm.gamma"),
    ("blocks.{layer}.{path}.attn.qkv.weight", "blocks.{layer}.{path}.attn.qkv.weight"),
    (
        "blocks.{layer}.{path}.attn.aggregate_heads.0.weight",
        "blocks.{layer}.{path}.attn.out_proj.weight",
    ),
)

#: Non-network entries of their checkpoints, dropped on conversion.
_IGNORABLE = re.compile(r"(^|\.)(window|n_averaged)$")


def _pattern(template: str, paths: Sequence[str]) -> re.Pattern:
    fields = {
        "band": r"(?P<band>\d+)",
        "layer": r"(?P<layer>\d+)",
        "param": r"(?P<param>weight|bias)",
        "conv": r"(?P<conv>conv1d|deconv1d)",
        "path": "(?P<path>" + "|".join(paths) + ")",
    }
    parts = re.split(r"(\{\w+\})", template)
    regex = "".join(
        fields[p[1:-1]] if p.startswith("{") else re.escape(p) for p in parts
    )
    return re.compile(f"^{regex}$")


_FORWARD = [(_pattern(theirs, list(_PATHS)), ours) for theirs, ours in RENAME_RULES]
_BACKWARD = [
    (_pattern(ours, list(_PATHS.values())), theirs) for theirs, ours in RENAME_RULES
]


def _rename(key: str, rules, path_map: Mapping[str, str]) -> Optional[str]:
    for pattern, template in rules:
        match = pattern.match(key)
        if match is not None:
            values = match.groupdict()
            if "path" in values:
                values["path"] = path_map[values["path"]]
            return template.format(**values)
    return None


def their_key_to_ours(key: str) -> Optional[str]:
    """Our name (below ``separator.model.``) of one of their network parameters."""
    return _rename(key, _FORWARD, _PATHS)


def our_key_to_theirs(key: str) -> Optional[str]:
    """Their name (below their network prefix) of one of our network parameters."""
    return _rename(key, _BACKWARD, {v: k for k, v in _PATHS.items()})


# --------------------------------------------------------------------------- weights
def load_checkpoint(path: Path) -> Dict[str, torch.Tensor]:
    """Their state dict, loaded without running code (``weights_only=True``).

    Accepts a plain state dict (their published ``model.pth``) or a Lightning
    checkpoint whose tensors are under ``state_dict``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RuntimeError(
            f"cannot load {path} with weights_only=True ({type(e).__name__}: {e}). The "
            "file is damaged, or it is a Lightning checkpoint that stores Python "
            "objects; then extract its weights in a trusted environment: python -c "
            "\"import torch; torch.save(torch.load('in.ckpt', weights_only=False)"
            "['state_dict'], 'model.pth')\""
        ) from e
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in obj.values()
    ):
        raise ValueError(f"{path} does not hold a state dict (name → tensor)")
    return dict(obj)


@dataclass
class RenamedWeights:
    """Their network's weights under our names, and what was left out."""

    state_dict: Dict[str, torch.Tensor]
    prefix: str
    ignored: List[str] = field(default_factory=list)


def rename_state_dict(theirs: Mapping[str, torch.Tensor]) -> RenamedWeights:
    """Rename their network's parameters to ours (``separator.model.…``).

    Raises:
        ValueError: no BS-Locoformer (or several) in the state dict, a network
            parameter with no counterpart here, or other unknown entries.
    """
    prefixes = sorted(
        key[: -len(THEIR_ANCHOR)] for key in theirs if key.endswith(THEIR_ANCHOR)
    )
    if len(prefixes) != 1:
        raise ValueError(
            f"expected one BS-Locoformer in the checkpoint (a key ending in "
            f"{THEIR_ANCHOR!r}), found {len(prefixes)}: {prefixes[:4]}"
        )
    prefix = prefixes[0]
    out: Dict[str, torch.Tensor] = {}
    ignored: List[str] = []
    unknown: List[str] = []
    for key, value in theirs.items():
        if key.startswith(prefix):
            ours = their_key_to_ours(key[len(prefix) :])
            if ours is None:
                unknown.append(key)
            else:
                out[OUR_PREFIX + ours] = value
        elif _IGNORABLE.search(key):
            ignored.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"{len(unknown)} checkpoint entries have no counterpart in espnet2_ext's "
            f"BS-Locoformer (a different architecture?): {unknown[:8]}"
        )
    return RenamedWeights(out, prefix, ignored)


def to_their_state_dict(
    ours: Mapping[str, torch.Tensor], prefix: str = "model.model."
) -> Dict[str, torch.Tensor]:
    """Our ESPnet enh model's separator weights under their names (the inverse).

    Entries outside ``separator.model.`` (there are none in a BS-Locoformer enh model)
    are refused.
    """
    out = {}
    for key, value in ours.items():
        if not key.startswith(OUR_PREFIX):
            raise ValueError(f"{key!r} is not a parameter of the separator network")
        theirs = our_key_to_theirs(key[len(OUR_PREFIX) :])
        if theirs is None:
            raise ValueError(f"{key!r} has no counterpart in their BS-Locoformer")
        out[prefix + theirs] = value
    return out


# --------------------------------------------------------------------------- configs
_INTERPOLATION = re.compile(r"^\$\{([A-Za-z_][\w.]*)\}$")


def _resolve(value: Any, root: Mapping[str, Any], depth: int = 0) -> Any:
    """Resolve a whole-value ``${a.b}`` reference of an OmegaConf file."""
    if isinstance(value, str) and depth < 10:
        match = _INTERPOLATION.match(value.strip())
        if match is not None:
            node: Any = root
            for part in match.group(1).split("."):
                if not isinstance(node, Mapping) or part not in node:
                    raise ValueError(f"cannot resolve {value} in their config")
                node = node[part]
            return _resolve(node, root, depth + 1)
    return value


def read_their_config(path: Path) -> Dict[str, Any]:
    """:func:`parse_their_config` of their ``merged_config.yaml`` file."""
    with open(path, encoding="utf-8") as f:
        root = yaml.safe_load(f)
    try:
        return parse_their_config(root)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def parse_their_config(root: Mapping[str, Any]) -> Dict[str, Any]:
    """The separator and STFT settings of their (merged) config.

    Returns:
        ``net`` (BSLocoformer arguments), ``n_fft``, ``hop_length``, ``sample_rate``,
        ``input_scaling``.
    """
    if not isinstance(root, Mapping) or "task" not in root:
        raise ValueError(
            "not one of their configs (no 'task'); give merged_config.yaml"
        )
    if "_base_" in root:
        raise ValueError(
            "the config inherits from another file (_base_); give the published "
            "merged_config.yaml, which is complete"
        )
    task = root["task"]
    wrapper = task.get("model") or {}
    net = wrapper.get("model") or {}
    target = str(net.get("_target_", ""))
    if not target.endswith("bslocoformer.BSLocoformer"):
        raise ValueError(
            f"the network is {target or 'not given'}, not their BSLocoformer"
        )
    resolved = {k: _resolve(v, root) for k, v in net.items() if k != "_target_"}
    rate = _resolve(wrapper.get("fs", root.get("sr", MUSIC_SAMPLE_RATE)), root)
    return dict(
        net=resolved,
        n_fft=int(_resolve(wrapper.get("n_fft", root.get("n_fft", THEIR_N_FFT)), root)),
        hop_length=int(
            _resolve(wrapper.get("hop_length", root.get("hop_length", THEIR_HOP)), root)
        ),
        sample_rate=int(rate),
        input_scaling=bool(
            _resolve(wrapper.get("scaling", False), root)
            or _resolve(task.get("normalize_mixture", True), root)
        ),
    )


#: Defaults of their BSLocoformer's constructor, for keys a config leaves out.
_THEIR_DEFAULTS = dict(
    num_spk=2,
    num_chan=1,
    n_layers=6,
    emb_dim=128,
    num_groups=4,
    tf_order="ft",
    n_heads=4,
    attention_dim=128,
    conv1d_kernel=4,
    conv1d_shift=1,
    dropout=0.0,
    eps=1e-5,
)


def separator_conf_from_their_net(net: Mapping[str, Any]) -> Dict[str, Any]:
    """Our ``separator_conf`` from their BSLocoformer arguments (checked)."""
    net = {**_THEIR_DEFAULTS, **dict(net)}
    if net.get("norm_type") != "rmsgroupnorm":
        raise ValueError(
            f"norm_type {net.get('norm_type')!r}: only rmsgroupnorm models convert"
        )
    if net["tf_order"] != "ft":
        raise ValueError(f"tf_order {net['tf_order']!r}: only 'ft' models convert")
    ffn_type = net.get("ffn_type")
    if list(ffn_type or []) != ["swiglu_conv1d", "swiglu_conv1d"]:
        raise ValueError(
            f"ffn_type {ffn_type!r}: only macaron models with two swiglu_conv1d FFNs "
            "convert"
        )
    hidden = list(net.get("ffn_hidden_dim") or [])
    if len(hidden) != 2 or hidden[0] != hidden[1]:
        raise ValueError(
            f"ffn_hidden_dim {hidden!r}: our separator has one width for both FFNs"
        )
    emb_dim = int(net["emb_dim"])
    attention_dim = int(net["attention_dim"])
    return dict(
        num_spk=int(net["num_spk"]),
        num_channels=int(net["num_chan"]),
        n_layers=int(net["n_layers"]),
        emb_dim=emb_dim,
        ffn_hidden_dim=int(hidden[0]),
        n_heads=int(net["n_heads"]),
        norm_groups=int(net["num_groups"]),
        attention_dim=None if attention_dim == emb_dim else attention_dim,
        ffn_kernel_size=int(net["conv1d_kernel"]),
        ffn_stride=int(net["conv1d_shift"]),
        dropout=float(net["dropout"]),
        attention_dropout=float(net["dropout"]),
        eps=float(net["eps"]),
    )


def architecture_from_shapes(
    weights: Mapping[str, torch.Tensor], *, n_fft: int
) -> Dict[str, Any]:
    """Separator options that the tensor shapes of renamed weights determine.

    Everything but the number of attention heads and of RMS-norm groups (and the FFN
    stride, 1 in every published model): ``num_spk``, ``num_channels``, ``bands``,
    ``n_layers``, ``emb_dim``, ``ffn_hidden_dim``, ``ffn_kernel_size``,
    ``attention_dim``.
    """
    p = re.escape(OUR_PREFIX)
    encoder_norm = re.compile(rf"^{p}encoder\.encoders\.(\d+)\.norm\.weight$")
    block = re.compile(rf"^{p}blocks\.(\d+)\.")
    in_dims: Dict[int, int] = {}
    layers = set()
    for key, value in weights.items():
        if (match := encoder_norm.match(key)) is not None:
            in_dims[int(match.group(1))] = int(value.shape[0])
        if (match := block.match(key)) is not None:
            layers.add(int(match.group(1)))
    if sorted(in_dims) != list(range(len(in_dims))) or not in_dims:
        raise ValueError(
            f"band encoders missing or not numbered 0..K-1: {sorted(in_dims)}"
        )
    if sorted(layers) != list(range(len(layers))):
        raise ValueError(f"blocks are not numbered 0..L-1: {sorted(layers)}")
    features = [in_dims[b] for b in range(len(in_dims))]  # 2·M·w per band
    n_bins = n_fft // 2 + 1
    if sum(features) % (2 * n_bins) != 0:
        raise ValueError(
            f"the band encoders take {sum(features)} features in all, not a multiple "
            f"of 2 x {n_bins} bins (n_fft {n_fft}); the STFT size is wrong"
        )
    channels = sum(features) // (2 * n_bins)
    bands = [f // (2 * channels) for f in features]
    out_rows = int(weights[f"{OUR_PREFIX}decoder.heads.0.out.weight"].shape[0])
    emb_dim = int(weights[f"{OUR_PREFIX}encoder.encoders.0.proj.weight"].shape[0])
    arch = dict(
        num_spk=out_rows // (4 * channels * bands[0]),
        num_channels=channels,
        bands=bands,
        n_layers=len(layers),
        emb_dim=emb_dim,
        ffn_hidden_dim=emb_dim,
        ffn_kernel_size=8,
        attention_dim=emb_dim,
    )
    if layers:
        path = f"{OUR_PREFIX}blocks.0.freq_path."
        conv = weights[path + "ffn1.conv1d.weight"]  # [2C, D, kernel]
        arch["ffn_hidden_dim"] = int(conv.shape[0]) // 2
        arch["ffn_kernel_size"] = int(conv.shape[2])
        arch["attention_dim"] = int(weights[path + "attn.qkv.weight"].shape[0]) // 3
    return arch


# --------------------------------------------------------------------------- convert
@dataclass
class Conversion:
    """Result of :func:`convert`: our config (dict) and state dict, and a report."""

    config: Dict[str, Any]
    state_dict: Dict[str, torch.Tensor]
    report: Dict[str, Any]


def convert(
    theirs: Mapping[str, torch.Tensor],
    *,
    their_config: Optional[Mapping[str, Any]] = None,
    n_heads: Optional[int] = None,
    norm_groups: Optional[int] = None,
    n_fft: int = THEIR_N_FFT,
    hop_length: int = THEIR_HOP,
    sample_rate: int = MUSIC_SAMPLE_RATE,
    stem_order: str = "musdb",
    stems: Optional[Sequence[str]] = None,
) -> Conversion:
    """Convert their state dict (and config) into our config and state dict.

    Args:
        theirs: their checkpoint's state dict.
        their_config: :func:`read_their_config` of their ``merged_config.yaml``; without
            it the architecture is read from the tensor shapes plus ``n_heads`` and
            ``norm_groups``, and the STFT from ``n_fft``/``hop_length``/``sample_rate``.
        stem_order: for 4-output models, ``"musdb"`` re-orders their (bass, drums,
            vocals, other) outputs to ours (vocals, bass, drums, other); ``"theirs"``
            keeps their order (and names the stems so).
        stems: names of their outputs in their order (overrides the 4-stem naming;
            no re-ordering).
    """
    from espnet2_ext.enh.head_selection import select_heads_in_state_dict

    if stem_order not in ("musdb", "theirs"):
        raise ValueError(f"stem_order must be 'musdb' or 'theirs', got {stem_order!r}")
    renamed = rename_state_dict(theirs)
    weights = renamed.state_dict
    if their_config is not None:
        n_fft, hop_length = their_config["n_fft"], their_config["hop_length"]
        sample_rate = their_config["sample_rate"]
    shapes = architecture_from_shapes(weights, n_fft=n_fft)
    if their_config is not None:
        conf = separator_conf_from_their_net(their_config["net"])
        conf["input_scaling"] = their_config["input_scaling"]
        for key in ("num_spk", "num_channels", "n_layers", "emb_dim", "ffn_hidden_dim"):
            if conf[key] != shapes[key]:
                raise ValueError(
                    f"their config says {key} = {conf[key]} but the checkpoint's "
                    f"tensors have {shapes[key]}; the config belongs to another model"
                )
    else:
        if n_heads is None or norm_groups is None:
            raise ValueError(
                "without their config the number of attention heads and RMS-norm "
                "groups is unknown: give their merged_config.yaml, a paper size "
                "(--size small|medium|large), or --n_heads and --norm_groups"
            )
        conf = {k: v for k, v in shapes.items() if k != "bands"}
        attention = conf.pop("attention_dim")
        conf.update(
            attention_dim=None if attention == conf["emb_dim"] else attention,
            n_heads=int(n_heads),
            norm_groups=int(norm_groups),
            ffn_stride=1,
        )
    bands = shapes["bands"]
    conf["bands"] = None if tuple(bands) == tuple(DEFAULT_BANDS) else bands
    # their wrapper runs the network on the first L // hop frames (see the docstring)
    conf["drop_last_frame"] = True
    num_spk = conf["num_spk"]

    names: Optional[List[str]] = None
    order = None
    if stems is not None:
        names = [str(s) for s in stems]
        if len(names) != num_spk:
            raise ValueError(f"{len(names)} stem names for a {num_spk}-output model")
    elif num_spk == len(THEIR_STEMS):
        if stem_order == "musdb":
            order = [THEIR_STEMS.index(s) for s in MUSDB_STEMS]
            weights = select_heads_in_state_dict(
                weights, order, num_outputs=num_spk, num_channels=conf["num_channels"]
            )
            names = list(MUSDB_STEMS)
        else:
            names = list(THEIR_STEMS)
    stft = dict(
        n_fft=int(n_fft),
        hop_length=int(hop_length),
        window="hann",
        default_fs=int(sample_rate),
    )
    config: Dict[str, Any] = dict(
        encoder="stft",
        encoder_conf=dict(stft),
        decoder="stft",
        decoder_conf=dict(stft),
        separator="bs_locoformer",
        separator_conf=conf,
        # ESPnet builds a loss with every model; inference does not use it
        criterions=[dict(name="snr", conf={}, wrapper="fixed_order", wrapper_conf={})],
        multichannel_loss="folded",
        sample_rate=int(sample_rate),
        num_spk=num_spk,
    )
    if names is not None:
        config["stems"] = names
    report = dict(
        network_prefix=renamed.prefix,
        parameters=len(weights),
        ignored_entries=renamed.ignored,
        outputs=num_spk,
        output_order=(
            {name: int(their) for name, their in zip(names, order)}
            if order is not None
            else "as in the checkpoint"
        ),
        stems=names,
    )
    return Conversion(config, weights, report)


def find_their_config(checkpoint: Path) -> Optional[Path]:
    """``merged_config.yaml`` of their layout ``<model>/checkpoints/model.pth``."""
    for folder in (checkpoint.parent.parent, checkpoint.parent):
        candidate = folder / "merged_config.yaml"
        if candidate.is_file():
            return candidate
    return None


def convert_checkpoint(
    checkpoint: Path,
    out_dir: Path,
    *,
    config: Optional[Path] = None,
    size: Optional[str] = None,
    n_heads: Optional[int] = None,
    norm_groups: Optional[int] = None,
    stem_order: str = "musdb",
    stems: Optional[Sequence[str]] = None,
    overwrite: bool = False,
) -> Tuple[Path, Path]:
    """Convert one of their checkpoints into ``out_dir`` (config.yaml, model.pth).

    The weights are loaded strictly into the model built from the written config before
    anything is written (:func:`espnet2_ext.zoo.write_model_dir`).
    """
    from espnet2_ext.zoo import sha256, write_model_dir

    checkpoint = Path(checkpoint)
    out_dir = Path(out_dir)
    if (out_dir / "config.yaml").exists() and not overwrite:
        raise FileExistsError(f"{out_dir}/config.yaml exists; use --overwrite")
    if size is not None:
        # heads and RMS-norm groups cannot be read from tensor shapes: take them from
        # the paper size (the separator's table)
        if size not in BS_LOCOFORMER_SIZES:
            raise ValueError(
                f"size must be one of {sorted(BS_LOCOFORMER_SIZES)}, got {size!r}"
            )
        n_heads = n_heads or BS_LOCOFORMER_SIZES[size]["n_heads"]
        norm_groups = norm_groups or BS_LOCOFORMER_SIZES[size]["norm_groups"]
    if config is None and n_heads is None and norm_groups is None:
        config = find_their_config(checkpoint)
        if config is not None:
            logger.info("using their config %s", config)
    theirs = load_checkpoint(checkpoint)
    their_config = read_their_config(Path(config)) if config is not None else None
    result = convert(
        theirs,
        their_config=their_config,
        n_heads=n_heads,
        norm_groups=norm_groups,
        stem_order=stem_order,
        stems=stems,
    )
    report = dict(
        converted_by="espnet2_ext.convert.mixit_mss",
        checkpoint=str(checkpoint),
        checkpoint_sha256=sha256(checkpoint),
        config=None if config is None else str(config),
        **result.report,
    )
    paths = write_model_dir(
        result.config,
        result.state_dict,
        out_dir,
        extra_files={"conversion.yaml": yaml.safe_dump(report, sort_keys=False)},
    )
    logger.info(
        "converted %d tensors (%d-output model, stems %s) into %s; ignored %s",
        result.report["parameters"],
        result.report["outputs"],
        result.report["stems"],
        out_dir,
        result.report["ignored_entries"] or "nothing",
    )
    return paths


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Convert a MixIT-MSS (b-sigpro/mixit-mss) BS-Locoformer checkpoint "
        "into an espnet2_ext model folder (config.yaml + model.pth)."
    )
    parser.add_argument(
        "--checkpoint", required=True, type=Path, help="their .pth or .ckpt"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="their merged_config.yaml (default: found next to checkpoints/)",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--size",
        choices=sorted(BS_LOCOFORMER_SIZES),
        default=None,
        help="paper size, for heads and norm groups when there is no config",
    )
    parser.add_argument("--n_heads", type=int, default=None)
    parser.add_argument("--norm_groups", type=int, default=None)
    parser.add_argument(
        "--stem_order",
        choices=("musdb", "theirs"),
        default="musdb",
        help="4-output models: re-order to vocals, bass, drums, other (musdb) or keep "
        "their bass, drums, vocals, other",
    )
    parser.add_argument(
        "--stems", nargs="+", default=None, help="names of the outputs, in their order"
    )
    parser.add_argument("--overwrite", action="store_true")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config_path, model_path = convert_checkpoint(
            args.checkpoint,
            args.out,
            config=args.config,
            size=args.size,
            n_heads=args.n_heads,
            norm_groups=args.norm_groups,
            stem_order=args.stem_order,
            stems=args.stems,
            overwrite=args.overwrite,
        )
    except (OSError, ValueError, RuntimeError) as e:
        print(f"mixit_mss conversion failed: {e}", file=sys.stderr)
        return 1
    print(f"wrote {config_path} and {model_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
