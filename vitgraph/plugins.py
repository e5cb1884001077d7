"""Third-party block kinds: the ``vitgraph.blocks`` entry-point group.

A package that ships block kinds declares, in its ``pyproject.toml``::

    [project.entry-points."vitgraph.blocks"]
    my_blocks = "my_package.blocks"

and the registry imports ``my_package.blocks`` (whose classes use ``@register``) when it
first loads. Plugins come only from installed packages or an explicit ``--plugin
module`` (``vitgraph.spec.catalog.load_plugin``); a spec never names a module to import.
"""

from __future__ import annotations

from importlib.metadata import entry_points

GROUP = "vitgraph.blocks"


class PluginError(RuntimeError):
    """A plugin that could not be imported, named with its entry point."""


def load_entry_points() -> list[str]:
    """Import every module of the ``vitgraph.blocks`` group; return their names."""
    loaded = []
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        try:
            point.load()
        except Exception as exc:  # a broken plugin: say which one, not a bare traceback
            raise PluginError(
                f"block plugin '{point.name}' ({point.value}, entry point group "
                f"{GROUP}) failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        loaded.append(point.value)
    return loaded
