"""espnet2_ext: music source separation research on top of ESPnet's ``enh`` task.

``import espnet2_ext`` adds the plugin's classes (separator, criteria, loss wrappers,
preprocessors, data types, learning-rate schedulers) to ESPnet's choice tables, through
:func:`espnet2_ext.registry.register_on_espnet_import`: at once if ESPnet's enh task is
already imported, otherwise when it is. ESPnet's own tools then know the plugin's names,
e.g. ``espnet2.bin.enh_inference.SeparateSpeech`` loads a model trained here; modules of
the package that do not need ESPnet stay cheap to import. Our task module
(:mod:`espnet2_ext.tasks.enh`) also registers when imported, which is what training
workers started with ``spawn`` rely on.
"""

from espnet2_ext.registry import register_on_espnet_import
from espnet2_ext.version import __version__

register_on_espnet_import()

__all__ = ["__version__"]
