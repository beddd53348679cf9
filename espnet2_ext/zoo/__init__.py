"""Model folders and packs in one place: load, write, pack, resolve (zip / folder / hub)."""

from espnet2_ext.zoo.loading import load_model

__all__ = ["load_model"]
