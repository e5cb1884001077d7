"""TNT (arXiv:2103.00112): the words, a second token stream (counts and parity against
every timm ``tnt*`` model: tests/families.py)."""

from __future__ import annotations

import vitgraph


def test_tnt_words_are_a_second_token_stream_of_sixteen_per_patch():
    graph = vitgraph.load("tnt_s")
    assert graph.type_of("pixel_embed").shape == (196 * 16, 24)
    assert graph.type_of("blocks.11.words").shape == (196 * 16, 24)
    assert graph.type_of("blocks").shape == (197, 384)
