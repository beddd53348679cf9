"""One small guarded name → entry table, shared by every plugin-internal registry.

Used for the multi-step metrics (:mod:`espnet2_ext.enh.inference.metrics_registry`) and
the diffusion sampler's step rules and initialisations
(:mod:`espnet2_ext.diffusion.sampling`). ESPnet's own choice tables are touched only by
:mod:`espnet2_ext.registry`.

The guards are the same everywhere: names are lower-case identifiers, a name is
registered once (a second registration raises instead of silently replacing the
first), entries can be checked against a base class, and built-in entries cannot be
removed.

::

    STEP_RULES = Registry("step rule", base=StepRule)

    @STEP_RULES.register("hybrid", builtin=True)
    class HybridStep(StepRule): ...

    STEP_RULES.build("hybrid", {"eta": 0.5})
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, Generic, List, Optional, TypeVar

T = TypeVar("T")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Registry(Generic[T]):
    """A guarded table of named entries (classes or objects) of one kind.

    Args:
        kind: what the entries are, used in messages (``"metric"``, ``"step rule"``).
        base: if given, every registered class must subclass it (every registered
            object must be an instance of it).
    """

    def __init__(self, kind: str, *, base: Optional[type] = None):
        self.kind = kind
        self.base = base
        self._entries: Dict[str, T] = {}
        self._builtin: set = set()

    def _check_name(self, name: str) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                f"{self.kind} names are lower-case letters, digits and '_', starting "
                f"with a letter; got {name!r}"
            )

    def _check_entry(self, name: str, entry: T) -> None:
        if self.base is None:
            return
        ok = (
            issubclass(entry, self.base)
            if isinstance(entry, type)
            else isinstance(entry, self.base)
        )
        if not ok:
            raise TypeError(
                f"{self.kind} {name!r} must be a {self.base.__name__}, got {entry!r}"
            )

    def add(self, name: str, entry: T, *, builtin: bool = False) -> T:
        """Register ``entry`` under ``name`` and return it.

        Raises:
            ValueError: the name is not a lower-case identifier, or it is taken.
            TypeError: the entry is not of the registry's base type.
        """
        self._check_name(name)
        if name in self._entries:
            raise ValueError(
                f"{self.kind} {name!r} is already registered; pick another name"
            )
        self._check_entry(name, entry)
        self._entries[name] = entry
        if builtin:
            self._builtin.add(name)
        return entry

    def register(self, name: str, *, builtin: bool = False) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorate(entry: T) -> T:
            return self.add(name, entry, builtin=builtin)

        return decorate

    def remove(self, name: str) -> None:
        """Remove a user-registered entry (built-in entries stay).

        Raises:
            ValueError: unknown or built-in name.
        """
        if name not in self._entries:
            raise ValueError(f"{self.kind} {name!r} is not registered")
        if name in self._builtin:
            raise ValueError(f"{self.kind} {name!r} is built in and cannot be removed")
        del self._entries[name]

    def is_builtin(self, name: str) -> bool:
        return name in self._builtin

    def get(self, name: str) -> T:
        """The entry registered as ``name``.

        Raises:
            ValueError: unknown name; the message lists the known ones.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown {self.kind} {name!r}; choose one of {self.names()}"
            ) from None

    def build(self, name: str, conf: Optional[Dict[str, Any]] = None) -> Any:
        """Instantiate the class registered as ``name`` with keyword arguments ``conf``."""
        return self.get(name)(**(conf or {}))

    def names(self) -> List[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {self.names()})"
