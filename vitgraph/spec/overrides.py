"""Overrides as users type them: ``--set key=value`` pairs into the overrides dict that
``load(spec, overrides=...)`` takes (keys: an arg, ``input.size``/``input.channels`` or
``node.param``; values read as YAML scalars or flow lists)."""

from __future__ import annotations

from typing import Any

import yaml

from vitgraph.errors import Location, SpecError

#: the "file" an override's problems are located in
OVERRIDE_FILE = "<--set>"


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``["depth=6", "head.classes=10"]`` -> ``{"depth": 6, "head.classes": 10}`` (YAML values)."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise SpecError.at(
                Location(OVERRIDE_FILE),
                pair,
                "expected key=value",
                "for example --set depth=6 or --set input.size=384",
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, dict | list) and not raw.strip().startswith("["):
            value = raw
        overrides[key.strip()] = value
    return overrides
