"""The option audit of the transformers classes ``from_hf`` converts (see
``vitgraph.interop.options``)."""

from __future__ import annotations

from vitgraph.interop.options import Option

TABLES: dict[str, dict[str, Option]] = {}
