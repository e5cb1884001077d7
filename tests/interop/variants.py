"""Layer classes a converter has not read: a subclass of timm's default under another
name computes the same thing, but a converter reading class names must refuse it (it
cannot know what a user's class overrides). The option tables name these as examples."""

from __future__ import annotations

from timm.layers import PatchEmbed
from timm.models.cait import LayerScaleBlock, LayerScaleBlockClassAttn, TalkingHeadAttn
from timm.models.twins import Block as TwinsBlock
from torch import nn


class OtherPatchEmbed(PatchEmbed):
    pass


class OtherLayerScaleBlock(LayerScaleBlock):
    pass


class OtherLayerScaleBlockClassAttn(LayerScaleBlockClassAttn):
    pass


class OtherTalkingHeadAttn(TalkingHeadAttn):
    pass


class OtherTwinsBlock(TwinsBlock):
    pass


#: a LeViT stem_backbone other than timm's own stems (a patchify conv)
LEVIT_STEM = nn.Sequential(nn.Conv2d(3, 32, 16, 16))
