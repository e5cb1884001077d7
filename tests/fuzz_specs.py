"""Mutations of the shipped specs for fuzzing the loader and validator (issue: hardening).

Each case deletes, duplicates, renames or retypes keys and values of one shipped spec,
breaks references, swaps kinds, makes repeats huge, nests deeply or adds unicode; the
loader and validator may only raise SpecError, each problem located, in under 2 s.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import yaml

from vitgraph.spec.catalog import registry, shipped_specs

_TEXTS = {name: open(path, encoding="utf-8").read() for name, path in shipped_specs().items()}

SCALARS: list[Any] = [
    None,
    0,
    -1,
    1,
    2,
    3,
    7,
    3.5,
    -0.5,
    1e300,
    10**12,
    True,
    False,
    "",
    "x",
    "ünïcødé ✓",
    "$nope",
    "${1/0}",
    "${dim * }",
    "${10 ** 10 ** 10}",
    "$dim",
    "${i}",
    "input",
    "head",
    "blocks",
    [],
    {},
    [1, 2],
    [[[[]]]],
    {"a": {"b": {"c": {}}}},
    "a" * 5000,
]


def _kinds() -> list[str]:
    return registry().kinds()


def _mutate(data: Any, rng: random.Random, depth: int = 0) -> Any:
    if isinstance(data, dict) and data:
        key = rng.choice(list(data))
        roll = rng.random()
        if roll < 0.15:
            del data[key]
        elif roll < 0.25:
            data[f"{key}_" if rng.random() < 0.5 else key[:-1] or "k"] = data.pop(key)
        elif roll < 0.3 and key == "kind":
            data[key] = rng.choice(_kinds())
        elif roll < 0.35 and key == "repeat":
            data[key] = rng.choice([10**6, 0, -3, 999, "${10**9}"])
        elif roll < 0.55 or depth > 5:
            data[key] = copy.deepcopy(rng.choice(SCALARS))
        else:
            data[key] = _mutate(data[key], rng, depth + 1)
    elif isinstance(data, list) and data:
        index = rng.randrange(len(data))
        roll = rng.random()
        if roll < 0.15:
            del data[index]
        elif roll < 0.3:
            data.insert(index, copy.deepcopy(data[index]))
        elif roll < 0.4:
            data[index] = {
                "id": f"n{index}",
                "kind": rng.choice(_kinds()),
                "inputs": [rng.choice(["input", "nowhere", "head"])],
            }
        elif roll < 0.5 or depth > 5:
            data[index] = copy.deepcopy(rng.choice(SCALARS))
        else:
            data[index] = _mutate(data[index], rng, depth + 1)
    elif depth == 0:
        return rng.choice(SCALARS)
    return data


def mutated_spec(seed: int) -> tuple[str, str]:
    """(spec family, YAML text) of one fuzz case, reproducible from ``seed``."""
    rng = random.Random(seed)
    name = rng.choice(sorted(_TEXTS))
    data = yaml.safe_load(_TEXTS[name])
    for _ in range(rng.randint(1, 4)):
        data = _mutate(data, rng)
    if rng.random() < 0.05:  # deep nesting
        nested: Any = "x"
        for _ in range(rng.randint(10, 200)):
            nested = [nested]
        args = data.get("args") if isinstance(data, dict) else None
        if isinstance(args, dict):
            data["args"] = {**args, "deep": nested}
        else:
            data = nested
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if rng.random() < 0.03:  # raw text damage
        cut = rng.randrange(max(1, len(text)))
        text = (
            text[:cut]
            + rng.choice(["\t", ": :", "{", "!!python/object:os.system", "&a *a"])
            + text[cut:]
        )
    return name, text
