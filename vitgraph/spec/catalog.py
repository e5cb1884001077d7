"""The catalog: the shipped specs (by family and variant name) and the block kinds.

``registry()`` returns the registry with every shipped kind loaded: the block modules of
``vitgraph.blocks`` (which ``@register`` their kinds), the composite files
``blocks/*.yaml`` and installed plugins (entry-point group ``vitgraph.blocks``).
``resolve_spec`` turns what a user types (a path, a family, a variant) into a file.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vitgraph.errors import Location, SpecError
from vitgraph.plugins import load_entry_points
from vitgraph.registry import REGISTRY, Registry
from vitgraph.spec.composites import load_composite
from vitgraph.suggest import did_you_mean

_loaded = False


def registry() -> Registry:
    """The registry with every shipped block kind loaded."""
    global _loaded
    if not _loaded:
        _loaded = True
        package = importlib.import_module("vitgraph.blocks")
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            importlib.import_module(f"vitgraph.blocks.{info.name}")
        for entry in sorted(resources.files("vitgraph.blocks").iterdir(), key=lambda p: p.name):
            if entry.name.endswith(".yaml"):
                REGISTRY.add_composite(load_composite(entry.read_text(), str(entry)))
        load_entry_points()  # installed third-party kinds (group vitgraph.blocks)
    return REGISTRY


def load_plugin(module: str) -> None:
    """Import a third-party module that registers block kinds (named explicitly by the user)."""
    registry()
    importlib.import_module(module)


def spec_dir() -> Any:
    return resources.files("vitgraph.specs")


@functools.cache
def shipped_specs() -> dict[str, str]:
    """Shipped spec family name -> file path."""
    return {
        e.name[:-5]: str(e)
        for e in sorted(spec_dir().iterdir(), key=lambda p: p.name)
        if e.name.endswith(".yaml")
    }


#: libyaml's safe loader when PyYAML has it (several times faster): shipped files only
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def read_shipped(path: str) -> Any:
    """A shipped spec file as plain data (for indexes and listings; a spec that is loaded
    goes through the parse phase with its marks)."""
    loader = _SAFE_LOADER(Path(path).read_text(encoding="utf-8"))
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


@functools.cache
def variant_index() -> dict[str, str]:
    """Variant name -> the family that defines it (read without full validation)."""
    index: dict[str, str] = {}
    for family, path in shipped_specs().items():
        data = read_shipped(path)
        for name in (data or {}).get("variants", {}) or {}:
            index[name] = family
    return index


def resolve_spec(spec: str | Path) -> tuple[str, str | None]:
    """(file path, implied variant) for a path, a family name or a variant name."""
    text = str(spec)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise SpecError.at(Location(text), "", f"spec file '{text}' does not exist")
        return str(path), None
    specs = shipped_specs()
    if text in specs:
        return specs[text], None
    variants = variant_index()
    if text in variants:
        return specs[variants[text]], text
    hint = did_you_mean(text, [*specs, *variants])
    raise SpecError.at(
        Location(text),
        "",
        f"no spec file, shipped spec or variant named '{text}'{hint}",
        "run `vitgraph list` to see the shipped specs and variants",
    )
