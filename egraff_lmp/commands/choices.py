"""Command-line choices read from the modules that own them, only when argparse checks a
value or prints the help: building the parser imports no torch (the deploy package, where
the family records and the plugin's schema live, imports it)."""

from __future__ import annotations

from collections.abc import Callable


class LazyChoices:
    """``choices=`` for argparse whose values ``names()`` gives when first needed."""

    def __init__(self, names: Callable[[], list[str]]):
        self._load = names
        self._names: list[str] | None = None

    def _values(self) -> list[str]:
        if self._names is None:
            self._names = list(self._load())
        return self._names

    def __contains__(self, name) -> bool:
        return name in self._values()

    def __iter__(self):
        return iter(self._values())

    def __len__(self) -> int:
        return len(self._values())


def family_names() -> list[str]:
    """The family records' names (``deploy.families.registry``)."""
    from ..deploy.families import registry

    return registry.names()


def pair_mode_names() -> list[str]:
    """The modes of ``pair_style egraff`` (``deploy.schema``, the plugin's own list)."""
    from ..deploy.schema import MODE_NAMES

    return list(MODE_NAMES)
