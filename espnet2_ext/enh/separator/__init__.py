"""Separators of the plugin (thin adapters over :mod:`espnet2_ext.enh.layers`)."""


def is_plugin_separator(separator: object) -> bool:
    """True for a separator class defined by this plugin.

    Only the plugin's separators take native multi-channel audio and declare it with
    ``num_channels``; in stock ESPnet separators (e.g. BSRNN) ``num_channels`` is a
    hidden width, not a count of audio channels, so callers must not read it there.
    """
    return type(separator).__module__.startswith("espnet2_ext.")


def audio_channels(separator: object) -> int:
    """Audio channels a separator takes natively: its ``num_channels`` for the plugin's
    separators, 1 for stock ESPnet ones (mono; stereo is separated per channel)."""
    if is_plugin_separator(separator):
        return int(getattr(separator, "num_channels", 1) or 1)
    return 1
