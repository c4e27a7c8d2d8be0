"""A module imported when it is first used rather than when a library imports it."""

from __future__ import annotations

import importlib
import sys
import types


class _ImportedOnFirstUse(types.ModuleType):
    """Stands in for a module until an attribute is asked for; then imports the real one,
    which takes its place in sys.modules. (importlib.util.LazyLoader would load it at once
    here: the `import` statement itself reads the module's __spec__.)"""

    def __getattr__(self, name: str):
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


def defer_import(name: str) -> None:
    """Make `import NAME` cheap until NAME is used; nothing changes once it is imported."""
    if name not in sys.modules:
        sys.modules[name] = _ImportedOnFirstUse(name)
