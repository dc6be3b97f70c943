"""Public names show their public home.

A package re-exports names from its private modules (``from ._cluster import Cluster as
Cluster``); :func:`fixup_module_metadata` then sets each re-exported object's ``__module__`` to
the package, so reprs, tracebacks and documentation say ``golem_trio.services.Cluster``, not
``golem_trio.services._cluster.Cluster``. Every public package calls it last, on its
``__all__``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["fixup_module_metadata"]

_ROOT = "golem_trio."


def fixup_module_metadata(
    module_name: str, names: Iterable[str], namespace: dict[str, Any]
) -> None:
    """Set ``__module__`` of every object named in ``names`` (from ``namespace``, the
    package's globals) that was defined in a private module of this package to
    ``module_name``; classes' own functions get their qualified names fixed too. Objects
    defined elsewhere (another public package, the standard library) are left as they are."""
    seen: set[int] = set()

    def fix(name: str, qualname: str, obj: object) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        home = getattr(obj, "__module__", None)
        if not isinstance(home, str) or not _is_private_home(home, module_name):
            return
        try:
            setattr(obj, "__module__", module_name)  # noqa: B010
        except (AttributeError, TypeError):  # an instance (a constant): nothing to fix
            return
        if isinstance(obj, type):
            inside = obj.__qualname__ + "."
            obj.__name__ = name
            obj.__qualname__ = qualname
            for attr_name, attr in list(vars(obj).items()):
                # Only what the class body defined; not other classes it refers to.
                if getattr(attr, "__qualname__", "").startswith(inside):
                    fix(attr_name, f"{qualname}.{attr_name}", attr)
        elif callable(obj) and hasattr(obj, "__qualname__"):
            setattr(obj, "__name__", name)  # noqa: B010
            setattr(obj, "__qualname__", qualname)  # noqa: B010

    for name in names:
        fix(name, name, namespace[name])


def _is_private_home(home: str, package: str) -> bool:
    """Whether ``home`` is a private module inside ``package`` (``package._x`` or deeper, or a
    private module of a sub-package)."""
    if not home.startswith(package + "."):
        return False
    rest = home[len(package) + 1 :].split(".")
    return any(part.startswith("_") for part in rest)
