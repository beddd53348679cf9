"""Which espnet2_ext versions may load a pack: the plugin-version record and its rule.

A pack made by :func:`espnet2_ext.zoo.packing.pack` records in ``meta.yaml``::

    plugins:
      espnet2_ext: <version>

Compatibility rule (:func:`compatibility_problem`): a pack made by espnet2_ext version
``P`` loads with the installed version ``I`` when

1. ``P`` and ``I`` have the same major version (for ``0.x`` releases, the same
   ``0.minor``, since before 1.0 a minor release may change model code), and
2. ``P`` is not newer than ``I`` (a newer release may have added options or layers that
   this one does not know).

A pack without the ``plugins`` entry (made by ESPnet's own packer) is loaded with a
warning; one whose entry breaks the rule is refused with :class:`IncompatiblePackError`.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

from packaging.version import InvalidVersion, Version

from espnet2_ext.version import __version__

logger = logging.getLogger(__name__)

#: The key under ``meta.yaml``'s ``plugins`` that records the version of espnet2_ext.
PLUGIN_NAME = "espnet2_ext"


class IncompatiblePackError(ValueError):
    """A pack made by an espnet2_ext version that the installed one cannot load."""


def recorded_version(meta: Optional[Mapping[str, Any]]) -> Optional[str]:
    """The espnet2_ext version ``meta.yaml`` records (``None`` if it records none)."""
    plugins = (meta or {}).get("plugins") or {}
    version = plugins.get(PLUGIN_NAME) if isinstance(plugins, dict) else None
    return None if version is None else str(version)


def compatibility_problem(
    pack_version: str, installed_version: str = __version__
) -> Optional[str]:
    """Why a pack made by ``pack_version`` cannot load here, or ``None`` if it can.

    See the module docstring for the rule.
    """
    try:
        made, here = Version(str(pack_version)), Version(str(installed_version))
    except InvalidVersion:
        return (
            f"the pack records espnet2_ext version {pack_version!r}, which is not a "
            "valid version number"
        )
    if made.major != here.major or (made.major == 0 and made.minor != here.minor):
        series = f"{made.major}.{made.minor}" if made.major == 0 else f"{made.major}"
        return (
            f"it was made by espnet2_ext {made}, but espnet2_ext {here} is installed: "
            f"a different {'0.x minor' if made.major == 0 else 'major'} version, whose "
            f"model code may differ. Install a {series}.x release, e.g. pip install "
            f"'espnet2_ext=={made}'"
        )
    if made > here:
        return (
            f"it was made by espnet2_ext {made}, newer than the installed {here}; "
            f"upgrade with pip install -U 'espnet2_ext>={made}'"
        )
    return None


def check_compatible(
    meta: Optional[Mapping[str, Any]],
    *,
    source: str,
    installed_version: str = __version__,
) -> None:
    """Refuse a pack whose ``meta.yaml`` names an incompatible plugin version.

    Raises:
        IncompatiblePackError: the rule of :func:`compatibility_problem` is broken.
    """
    if meta is None:
        return
    version = recorded_version(meta)
    if version is None:
        logger.warning(
            "%s: meta.yaml does not record an espnet2_ext version (not made by "
            "espnet2_ext.bin.pack); loading it anyway",
            source,
        )
        return
    problem = compatibility_problem(version, installed_version)
    if problem is not None:
        raise IncompatiblePackError(f"cannot load {source}: {problem}")


def requirement(version: str) -> str:
    """The pip requirement that loads a pack made by ``version`` (the rule above)."""
    made = Version(version)
    upper = f"0.{made.minor + 1}" if made.major == 0 else f"{made.major + 1}"
    return f"{PLUGIN_NAME}>={made},<{upper}"
