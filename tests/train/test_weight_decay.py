"""The trainer's optimizer groups are timm's: ``parameter_groups`` keeps what
``model.no_weight_decay()`` names out of weight decay, for the families whose tables and
tokens the trainer used to decay (CrossViT, Swin, LeViT, TNT)."""

from __future__ import annotations

import pytest

import vitgraph
from vitgraph.interop.timm import converter_for
from vitgraph.train.config import make_config
from vitgraph.train.loop import Trainer, parameter_groups

timm = pytest.importorskip("timm")
from timm.optim import param_groups_weight_decay  # noqa: E402

REDUCED = {
    "crossvit_9_240": {"depth": ((1, 1, 0),) * 2},
    "swin_tiny_patch4_window7_224": {
        "depths": (1, 1, 1, 1),
        "embed_dim": 32,
        "num_heads": (1, 2, 4, 8),
    },
    "levit_128s": {"depth": (1, 1, 1)},
    "tnt_s_patch16_224": {"depth": 1},
}
#: a table of each family that the trainer decayed before it read no_weight_decay()
TABLES = {
    "crossvit_9_240": ("pos_embed_small", "cls_token_large"),
    "swin_tiny_patch4_window7_224": ("relative_position_bias_table",),
    "levit_128s": ("attention_biases",),
    "tnt_s_patch16_224": ("pixel_pos",),
}


def _names(model, group) -> set[str]:
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {by_id[id(p)] for p in group["params"]}


@pytest.mark.parametrize("name", sorted(REDUCED))
def test_no_decay_group_is_timms(name):
    reference = timm.create_model(name, pretrained=False, **REDUCED[name])
    ours = vitgraph.from_timm(reference)
    rename = converter_for(reference)(reference).rename
    theirs = param_groups_weight_decay(
        reference, 0.05, no_weight_decay_list=reference.no_weight_decay()
    )
    mine = parameter_groups(ours, 0.05)
    their_keep = next(g for g in theirs if g["weight_decay"] == 0.0)
    my_keep = next(g for g in mine if g["weight_decay"] == 0.0)
    assert _names(ours, my_keep) == {rename(n) for n in _names(reference, their_keep)}
    for table in TABLES[name]:
        assert any(n.endswith(table) for n in _names(ours, my_keep)), table


def test_the_trainer_optimizes_with_those_groups():
    config = make_config(
        spec="crossvit_ti",
        overrides={
            "depth_large": 1,
            "encoders": 1,
            "image_size": 48,
            "large_size": 32,
            "patches": [12, 16],
            "dims": [32, 32],
            "heads": [2, 2],
        },
        epochs=1,
        batch_size=32,
        progress=False,
    )
    trainer = Trainer(config, log=lambda line: None)
    keep = next(g for g in trainer.optimizer.param_groups if g["weight_decay"] == 0.0)
    names = _names(trainer.model, keep)
    assert {"pos_embed_small", "pos_embed_large", "cls_token_small", "cls_token_large"} <= names
    assert names == trainer.model.no_weight_decay()
