"""espnet2_ext: music source separation research on top of ESPnet's ``enh`` task.

Importing this package does not touch ESPnet. The plugin's classes are added to ESPnet's
choice tables by :func:`espnet2_ext.registry.register_all`, which our task module
(:mod:`espnet2_ext.tasks.enh`) calls once when it is imported, so every process that builds
or loads a model through our entry points (training workers included) has them.
"""

from espnet2_ext.version import __version__

__all__ = ["__version__"]
