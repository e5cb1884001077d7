"""IPT's blocks (Chen et al., "Pre-Trained Image Processing Transformer", CVPR 2021,
arXiv:2012.00364, and the official huawei-noah/Pretrained-IPT): the fixed RGB mean shift,
the task-selected heads (§3.1: a 3×3 conv and two 5×5 ResBlocks per task) and tails
(pixel-shuffle up-samplers, none for denoising and deraining), the per-task decoder query
embedding (§3.1 "task-specific embedding"), and the unfold/fold between the body's
feature map and its patch tokens (§3.1: P×P patches flattened to P²·C).

Task selection: every task-selected module holds one branch per task and runs the branch
of its ``task`` attribute (the official ``set_scale``); ``set_task(model, i)`` switches
them all, so the other tasks' branches get no gradient. ``task`` in the spec picks the
task the model is built for (its output size is that task's).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Self

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from vitgraph.block import Block, FunctionOp
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import Image, TensorType, Tokens, expect_grid, expect_image, expect_tokens
from vitgraph.vocabulary import PosInt

#: DIV2K's RGB mean on a [0, 1] scale (the official MeanShift default)
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


@register
class MeanShift(Block):
    """A fixed 1×1 convolution subtracting (``sign: -1``) or adding back (``sign: 1``) the
    RGB mean times ``rgb_range``; its parameters count but never train (official
    ``MeanShift``: requires_grad False)."""

    kind: Literal["mean_shift"] = "mean_shift"
    role = "structural"
    weight_init = "keep"  # fixed by build
    sign: Literal[-1, 1] = -1
    """-1 subtracts the mean (before the head), 1 adds it back (after the tail)."""
    rgb_range: Annotated[float, Field(gt=0)] = 255.0
    """Pixel value range (the official default: 255)."""
    mean: list[float] = list(DIV2K_MEAN)
    """Per-channel mean on a [0, 1] scale."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        if image.channels != len(self.mean):
            raise ShapeError(
                f"mean has {len(self.mean)} values but the image has {image.channels} channels",
                field="mean",
            )
        return self, image

    def build(self, *inputs: TensorType) -> nn.Module:
        channels = len(self.mean)
        conv = nn.Conv2d(channels, channels, 1)
        assert conv.bias is not None
        with torch.no_grad():
            conv.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
            conv.bias.copy_(self.sign * self.rgb_range * torch.tensor(self.mean))
        conv.requires_grad_(False)
        return conv


class TaskSelected(nn.Module):
    """One branch per task in ``branches``; the forward runs ``branches[task]``."""

    def __init__(self, branches: list[nn.Module], task: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.task = task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branches[self.task](x)


def set_task(model: nn.Module, task: int) -> nn.Module:
    """Point every task-selected module of ``model`` at ``task`` (its head, decoder query
    and tail); returns the model. A task the model does not have is a ValueError."""
    selected = [m for m in model.modules() if isinstance(m, TaskSelected | TaskQueries)]
    if not selected:
        raise ValueError(f"{type(model).__name__} has no task-selected modules")
    tasks = {len(m.branches) if isinstance(m, TaskSelected) else m.tasks for m in selected}
    count = min(tasks)
    if not 0 <= task < count:
        raise ValueError(
            f"task {task} is out of range: the model has {count} task(s), 0-{count - 1}"
        )
    for module in selected:
        module.task = task
    return model


class _TaskParams(Block):
    """The task the model is built for."""

    task: Annotated[int, Field(ge=0)] = 0
    """The task the model is built for (``set_task`` switches later)."""

    def _check_task(self, tasks: int, what: str = "tasks") -> None:
        if self.task >= tasks:
            raise ShapeError(
                f"task {self.task} is out of range: {tasks} task(s) ({what}), 0-{tasks - 1}",
                field="task",
                hint=f"set task to a value from 0 to {tasks - 1}",
            )


def _conv(c_in: int, c_out: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)  # official default_conv


class ResBlock(nn.Module):
    """EDSR's residual block (official ``common.ResBlock``): x + conv(relu(conv(x)))."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(dim, dim, kernel), nn.ReLU(), _conv(dim, dim, kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


@register
class TaskHead(_TaskParams):
    """Per task: a 3×3 conv to ``dim`` channels and ``res_blocks`` ResBlocks of
    ``res_kernel``×``res_kernel`` convs (§3.1 "Heads"); runs the selected task's."""

    kind: Literal["task_head"] = "task_head"
    role = "conv"
    weight_init = "keep"  # PyTorch's conv default, as the official code
    tasks: PosInt = 1
    """Number of tasks (one head each)."""
    dim: PosInt = 64
    """Feature channels (the official n_feats)."""
    kernel: PosInt = 3
    """Kernel of the first conv."""
    res_blocks: Annotated[int, Field(ge=0)] = 2
    """ResBlocks after it."""
    res_kernel: PosInt = 5
    """Kernel of the ResBlocks' convs."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        self._check_task(self.tasks)
        return self, Image(self.dim, image.height, image.width)

    def build(self, *inputs: TensorType) -> nn.Module:
        image = expect_image(inputs[0], self.kind)
        branches: list[nn.Module] = []
        for _ in range(self.tasks):
            layers: list[nn.Module] = [_conv(image.channels, self.dim, self.kernel)]
            layers += [ResBlock(self.dim, self.res_kernel) for _ in range(self.res_blocks)]
            branches.append(nn.Sequential(*layers))
        return TaskSelected(branches, self.task)


def upsampler(dim: int, scale: int) -> nn.Sequential:
    """EDSR's up-sampler (official ``common.Upsampler``): a 3×3 conv to 4·dim and a ×2
    pixel shuffle per factor 2, or one conv to 9·dim and a ×3 shuffle; ×1: nothing."""
    layers: list[nn.Module] = []
    if scale == 3:
        layers += [_conv(dim, 9 * dim, 3), nn.PixelShuffle(3)]
    else:
        for _ in range(int(math.log2(scale))):
            layers += [_conv(dim, 4 * dim, 3), nn.PixelShuffle(2)]
    return nn.Sequential(*layers)


@register
class TaskTail(_TaskParams):
    """Per task: an up-sampler by that task's scale and a 3×3 conv to ``channels`` (§3.1
    "Tails"); runs the selected task's. ``tasks`` is the length of ``scales``."""

    kind: Literal["task_tail"] = "task_tail"
    role = "conv"
    weight_init = "keep"  # PyTorch's conv default, as the official code
    objective = "restoration"  # vitgraph.train.objectives.restoration; predict's renderer
    scales: list[Literal[1, 2, 3, 4, 8]] = [2]
    """Up-scaling factor of each task (1: same size, denoising and deraining)."""
    channels: PosInt = 3
    """Output channels."""
    names: list[str] | None = None
    """A name per task, as ``vitgraph restore --task`` takes it (sr2, denoise30, ...)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        self._check_task(len(self.scales), "scales")
        if self.names is not None and len(self.names) != len(self.scales):
            raise ShapeError(
                f"names has {len(self.names)} task(s) but scales has {len(self.scales)}",
                field="names",
            )
        scale = self.scales[self.task]
        return self, Image(self.channels, image.height * scale, image.width * scale)

    def build(self, *inputs: TensorType) -> nn.Module:
        image = expect_image(inputs[0], self.kind)
        branches: list[nn.Module] = [
            nn.Sequential(upsampler(image.channels, s), _conv(image.channels, self.channels, 3))
            for s in self.scales
        ]
        return TaskSelected(branches, self.task)


class TaskQueries(nn.Module):
    def __init__(self, tasks: int, length: int, dim: int, task: int) -> None:
        super().__init__()
        self.tasks, self.length, self.dim, self.task = tasks, length, dim, task
        self.weight = nn.Parameter(torch.randn(tasks, length * dim))  # nn.Embedding's N(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = self.weight[self.task].view(1, self.length, self.dim)  # (1, N, D)
        return query.expand(x.shape[0], -1, -1)


@register
class TaskQueryEmbed(_TaskParams):
    """The task-specific decoder query (§3.1 "task-specific embedding"): per task one
    ``N × D`` table added to the decoder's queries and keys (the official ``query_embed``,
    an ``nn.Embedding(tasks, N·D)``); returns the selected task's, one per image."""

    kind: Literal["task_queries"] = "task_queries"
    role = "position"
    weight_init = "keep"  # N(0, 1), nn.Embedding's
    tasks: PosInt = 1
    """Number of tasks (one query table each)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        x = expect_tokens(inputs[0], self.kind)
        self._check_task(self.tasks)
        return self, x

    def build(self, *inputs: TensorType) -> nn.Module:
        x = expect_tokens(inputs[0], self.kind)
        return TaskQueries(self.tasks, x.length, x.dim, self.task)


def unfold_patches(x: torch.Tensor, *, patch: int) -> torch.Tensor:
    # (B, C, H, W) -> (B, N, C·p·p), features in (c, kh, kw) order as F.unfold
    return F.unfold(x, patch, stride=patch).transpose(1, 2)


def fold_patches(x: torch.Tensor, *, patch: int, size: tuple[int, int]) -> torch.Tensor:
    # (B, N, C·p·p) -> (B, C, H, W): the inverse of unfold_patches
    return F.fold(x.transpose(1, 2), size, patch, stride=patch)


@register
class Unfold(Block):
    """Non-overlapping ``patch × patch`` patches of a feature map as tokens of their
    flattened values (``C·patch²``, channel-major as ``F.unfold``), on the patch grid."""

    kind: Literal["unfold_patches"] = "unfold_patches"
    role = "structural"
    patch: PosInt
    """Patch side in pixels."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        for side, name in ((image.height, "height"), (image.width, "width")):
            if side % self.patch:
                raise ShapeError(
                    f"patch {self.patch} must divide the {image.height}x{image.width} body "
                    f"it receives ({name} {side} leaves {side % self.patch})",
                    field="patch",
                    hint=f"use a patch that divides {side}, or change the input size",
                )
        grid = (image.height // self.patch, image.width // self.patch)
        return self, Tokens(image.channels * self.patch**2, grid)

    def build(self, *inputs: TensorType) -> FunctionOp:
        return FunctionOp(unfold_patches, {"patch": self.patch})


@register
class Fold(Block):
    """Tokens of flattened ``patch × patch`` patches back into the feature map they came
    from (the inverse of ``unfold_patches``)."""

    kind: Literal["fold_patches"] = "fold_patches"
    role = "structural"
    patch: PosInt
    """Patch side in pixels."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        x = expect_tokens(inputs[0], self.kind)
        rows, cols = expect_grid(x, self.kind)
        if x.prefix or x.dim % self.patch**2:
            raise ShapeError(
                f"fold_patches needs tokens of C·{self.patch}² values on a grid without prefix "
                f"tokens, but receives {x}",
                field="patch",
            )
        channels = x.dim // self.patch**2
        return self, Image(channels, rows * self.patch, cols * self.patch)

    def build(self, *inputs: TensorType) -> FunctionOp:
        x = expect_tokens(inputs[0], self.kind)
        rows, cols = expect_grid(x, self.kind)
        size = (rows * self.patch, cols * self.patch)
        return FunctionOp(fold_patches, {"patch": self.patch, "size": size})


def _starts(size: int, tile: int, stride: int) -> list[int]:
    starts = list(range(0, size - tile + 1, stride))
    return starts if starts[-1] == size - tile else [*starts, size - tile]


def forward_chop(
    model: nn.Module, x: torch.Tensor, tile: int = 48, batch: int = 64
) -> torch.Tensor:
    """Run an image-to-image ``model`` built for ``tile × tile`` inputs on an image of any
    size at least that large, as the official ``forward_chop``: tiles every ``tile/4``
    pixels, each tile's outer ``tile/4`` band dropped except at the image border, the
    overlaps averaged. ``batch`` tiles run at once. ``x``: ``(B, C, H, W)``."""
    height, width = x.shape[-2:]
    if height < tile or width < tile:
        raise ValueError(
            f"the image {height}x{width} is smaller than one {tile}x{tile} tile: "
            f"pad or resize it to at least {tile}x{tile}, or build the model for a smaller "
            "input (--set size=...)"
        )
    stride = margin = max(tile // 4, 1)
    places = [(r, c) for r in _starts(height, tile, stride) for c in _starts(width, tile, stride)]
    tiles = torch.cat([x[..., r : r + tile, c : c + tile] for r, c in places])  # (T·B, C, t, t)
    outputs = torch.cat([model(part) for part in tiles.split(batch * x.shape[0])])
    scale = outputs.shape[-1] // tile
    size, keep = tile * scale, margin * scale
    total = x.new_zeros(x.shape[0], outputs.shape[1], height * scale, width * scale)
    weight = x.new_zeros(1, 1, height * scale, width * scale)
    for (r, c), y in zip(places, outputs.split(x.shape[0]), strict=True):
        rows = x.new_ones(size)
        cols = x.new_ones(size)
        if r > 0:
            rows[:keep] = 0
        if r + tile < height:
            rows[size - keep :] = 0
        if c > 0:
            cols[:keep] = 0
        if c + tile < width:
            cols[size - keep :] = 0
        mask = rows[:, None] * cols[None, :]
        window = (..., slice(r * scale, r * scale + size), slice(c * scale, c * scale + size))
        total[window] += y * mask
        weight[window] += mask
    return total / weight
