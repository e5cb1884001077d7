"""The option audit (issue #22): every constructor argument or config field of every
reference class a converter accepts, and what its converter does with it.

Each option is honoured (read off the module; the twin computes the reference's
function: ``equal`` lists configurations a test converts and compares, eval and train
logits and gradients), refused (a ``SpecError`` naming the option and the model:
``refuse`` lists configurations a test expects refused), or honoured for some values and
refused for others. ``issue`` names the issue that builds what is refused; None where no
issue plans it. A test reads each class's current signature and fails on an argument
this table does not classify, so a reference release that adds one fails a test
instead of converting silently.

``options_timm``, ``options_byobnet`` and ``options_hf`` beside this module hold the
tables.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

#: issue numbers of the building blocks refused today
DYNAMIC_SIZE = 20  # dynamic image size, headless models, unpooled outputs (#20)
MODERN = 23  # registers, qk-norm, RoPE, MAP pooling, GLU MLPs, RMSNorm, bias-free, ... (#23)

Kwargs = dict[str, Any]


@dataclass(frozen=True)
class Option:
    """What a converter does with one reference option."""

    honoured: str = ""
    """The values the twin computes as the reference does (empty: none)."""
    refused: str = ""
    """The values refused with a SpecError naming the option (empty: none)."""
    issue: int | None = None
    """The issue that builds the refused values (None: no issue plans them)."""
    equal: tuple[Kwargs, ...] = ()
    """Configurations (constructor keyword arguments) whose twin a test compares."""
    refuse: tuple[Kwargs, ...] = ()
    """Configurations a test expects refused, naming this option."""


def honoured(what: str, *equal: Kwargs) -> Option:
    return Option(honoured=what, equal=equal)


def refused(what: str, *refuse: Kwargs, issue: int | None = None) -> Option:
    return Option(refused=what, issue=issue, refuse=refuse)


def partly(
    what: str,
    equal: tuple[Kwargs, ...],
    not_what: str,
    refuse: tuple[Kwargs, ...],
    issue: int | None = None,
) -> Option:
    return Option(what, not_what, issue, equal, refuse)


#: the modules holding the tables: ``TABLES`` in each maps a reference class (its
#: import path) to its options
_MODULES = (
    "vitgraph.interop.options_timm",
    "vitgraph.interop.options_byobnet",
    "vitgraph.interop.options_hf",
)


def tables() -> dict[str, dict[str, Option]]:
    """Every audited reference class (``"timm.models.cait.Cait"``) and its options."""
    out: dict[str, dict[str, Option]] = {}
    for name in _MODULES:
        out.update(importlib.import_module(name).TABLES)
    return out


def option_of(cls: str, refusal: str) -> Option | None:
    """The table entry a refusal of class ``cls`` names (``"reg_tokens=4"`` of
    ``VisionTransformer``), looked up in the class's own table, then in those of the
    configs and blocks its module builds it from (ByobNet's ``ByoModelCfg``); None when
    no table lists it."""
    option = refusal.split("=")[0].split(" ")[0]
    every = tables()
    own = [path for path in every if path.rsplit(".", 1)[1] == cls]
    modules = {path.rsplit(".", 1)[0] for path in own}
    siblings = [p for p in every if p not in own and p.rsplit(".", 1)[0] in modules]
    for path in own + siblings:
        if option in every[path]:
            return every[path][option]
    return None
