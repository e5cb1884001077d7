"""Static tensor types that flow along the graph's edges, and the infer phase's helpers.

Shapes exclude the batch dimension. A block's shape rule maps its input types to its
output type before any weight exists, so mistakes are reported at the node with numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from vitgraph.errors import ShapeError


@dataclass(frozen=True)
class Image:
    """A feature map ``(C, H, W)``."""

    channels: int
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.channels, self.height, self.width)

    def __str__(self) -> str:
        return f"image {self.channels}x{self.height}x{self.width}"


@dataclass(frozen=True)
class Tokens:
    """A token sequence ``(N, D)``: ``prefix`` extra tokens (class, distillation) first,
    then the patch tokens, laid out on ``grid`` (rows, cols) when they come from one."""

    dim: int
    grid: tuple[int, int] | None
    prefix: int = 0
    count: int | None = None  # patch-token count when there is no grid

    @property
    def patches(self) -> int:
        if self.grid is not None:
            return self.grid[0] * self.grid[1]
        return self.count or 0

    @property
    def length(self) -> int:
        return self.prefix + self.patches

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.length, self.dim)

    def __str__(self) -> str:
        parts = [f"tokens {self.length}x{self.dim}"]
        if self.grid is not None:
            parts.append(f"grid {self.grid[0]}x{self.grid[1]}")
        if self.prefix:
            parts.append(f"+{self.prefix} prefix")
        return ", ".join(parts)


@dataclass(frozen=True)
class Vector:
    """A pooled vector or logits ``(D,)``."""

    dim: int

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def __str__(self) -> str:
        return f"vector {self.dim}"


@dataclass(frozen=True)
class Ids:
    """An integer-id sequence ``(N,)`` (int64) over a vocabulary of ``vocab`` ids: the
    palette indices of an image in raster order (iGPT), laid out on ``grid`` (rows, cols)
    when the sequence is an image's."""

    length: int
    vocab: int
    grid: tuple[int, int] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.length,)

    def __str__(self) -> str:
        grid = f", grid {self.grid[0]}x{self.grid[1]}" if self.grid else ""
        return f"ids {self.length} of {self.vocab}{grid}"


@dataclass(frozen=True)
class Mask:
    """A boolean map ``(H, W)`` of the valid pixels of a padded image (True = a pixel,
    False = padding: HF's ``pixel_mask``), or of a feature map it was resized to. An extra
    input the caller may omit: a block that reads one receives None then, meaning every
    pixel is valid."""

    height: int
    width: int

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.height, self.width)

    def __str__(self) -> str:
        return f"mask {self.height}x{self.width}"


@dataclass(frozen=True)
class Pyramid:
    """Feature maps at several strides (a backbone's taps, finest first): what a detector
    neck reads. ``strides[k]`` is the input side over level k's side."""

    levels: tuple[Image, ...]
    strides: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.levels[-1].shape

    def __str__(self) -> str:
        maps = ", ".join(
            f"{m.channels}x{m.height}x{m.width}/{s}"
            for m, s in zip(self.levels, self.strides, strict=True)
        )
        return f"pyramid of {len(self.levels)} level(s): {maps}"


@dataclass(frozen=True)
class MultiScale:
    """Several feature maps of one width flattened into one token sequence, finest level
    first (Deformable DETR's encoder input and memory): the tokens ``(S, D)`` with
    ``S = Σ h·w``, and beside them what every deformable attention reads — their
    positions, the valid-pixel mask, the valid ratios and reference points. At run time a
    tuple ``(tokens, pos, valid (B, S) or None, ratios (B, L, 2), references (B, S, L, 2),
    [(h, w) per level], sizes (L, 2) (w, h), and per pixel: centre (S, 2) in pixels, its
    level's (w, h) (S, 2), its level (S,))`` (the levels' sizes travel with the values, so
    a model built for one size runs at another)."""

    dim: int
    shapes: tuple[tuple[int, int], ...]
    strides: tuple[int, ...]

    @property
    def length(self) -> int:
        return sum(h * w for h, w in self.shapes)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.length, self.dim)

    def __str__(self) -> str:
        maps = ", ".join(f"{h}x{w}" for h, w in self.shapes)
        return f"multi-scale tokens {self.length}x{self.dim} ({len(self.shapes)} level(s): {maps})"


@dataclass(frozen=True)
class QueryState:
    """A deformable decoder's object queries between layers: the target ``(Q, D)``, its
    query positions, its reference points (``coords`` 2: centres; 4: boxes) and, once a
    layer refines them, that layer's box prediction (``boxes``). At run time a tuple
    ``(target, pos, references, boxes or None, proposals)``, ``proposals`` the two-stage
    encoder's ``(logits, boxes)`` (``proposals``) or ``()``."""

    queries: int
    dim: int
    coords: int
    levels: int
    boxes: bool = False
    proposals: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.queries, self.dim)

    def __str__(self) -> str:
        refined = ", refined boxes" if self.boxes else ""
        return f"{self.queries} object queries x {self.dim} ({self.coords}-d references{refined})"


@dataclass(frozen=True)
class Stack:
    """The outputs of ``layers`` layers of the same type stacked on a leading axis
    ``(L, N, D)`` (a decoder's intermediate outputs, each read by the auxiliary losses)."""

    layers: int
    item: Tokens

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.layers, *self.item.shape)

    def __str__(self) -> str:
        return f"{self.layers} stacked {self.item}"


@dataclass(frozen=True)
class Detections:
    """A set predictor's outputs, one per object query: class logits ``(Q, classes)``
    (the last class is "no object") and boxes ``(Q, 4)`` (normalised cx, cy, w, h).
    Eval returns ``(logits, boxes)``; training adds the ``layers - 1`` earlier decoder
    layers' ``(L-1, B, Q, classes)`` logits and ``(L-1, B, Q, 4)`` boxes."""

    queries: int
    classes: int
    layers: int = 1
    sigmoid: bool = False
    """Scores are per-class sigmoids with no "no object" class (Deformable DETR's focal
    head), not a softmax whose last class is "no object" (DETR)."""

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.queries, self.classes)

    def __str__(self) -> str:
        return f"detections {self.queries} queries x {self.classes} classes + boxes"


TensorType = (
    Image | Tokens | Vector | Ids | Mask | Pyramid | MultiScale | QueryState | Stack | Detections
)


T = TypeVar("T")


def expect(value: object, cls: type[T], what: str) -> T:
    """``value`` as tensor type ``cls``; a ShapeError unless it is one."""
    if not isinstance(value, cls):
        names = {
            Image: "an image",
            Tokens: "tokens",
            Vector: "a vector",
            Ids: "integer ids",
            Mask: "a pixel mask",
            Pyramid: "a feature pyramid",
            MultiScale: "multi-scale tokens",
            QueryState: "object queries",
            Stack: "stacked layer outputs",
            Detections: "detections",
        }
        raise ShapeError(f"{what} takes {names[cls]}, but receives {value}")
    return value


def expect_ids(t: TensorType, what: str) -> Ids:
    expect(t, Ids, what)
    assert isinstance(t, Ids)
    return t


def example(t: TensorType, batch: int, generator: Any = None, **where: Any) -> Any:
    """A tensor of type ``t`` with a batch dim: seeded N(0, 1) values, or uniformly drawn
    ids for ``Ids`` (int64 whatever ``dtype`` asks; ``where``: ``device``, ``dtype``)."""
    import torch  # the types themselves are torch-free: --help and list never load torch

    if isinstance(t, Ids):
        where = {k: v for k, v in where.items() if k != "dtype"}
        ids = torch.randint(0, t.vocab, (batch, *t.shape), generator=generator)
        return ids.to(**where)
    if isinstance(t, Mask):  # every pixel valid
        where = {k: v for k, v in where.items() if k != "dtype"}
        return torch.ones(batch, *t.shape, dtype=torch.bool).to(**where)
    x = torch.randn(batch, *t.shape, generator=generator)
    return x.to(**where)


def empty(t: TensorType, batch: int) -> Any:
    """An uninitialised tensor of type ``t`` (on the current default device: meta when
    counting), int64 for ids."""
    import torch

    if isinstance(t, Pyramid):
        return tuple(torch.empty(batch, *m.shape) for m in t.levels)
    if isinstance(t, MultiScale):  # no padding mask: every pixel valid
        levels = len(t.shapes)
        ratios = torch.ones(batch, levels, 2)
        refs = torch.empty(batch, t.length, levels, 2)
        tokens = torch.empty(batch, *t.shape)
        shapes = list(t.shapes)
        sizes = torch.tensor([[float(w), float(h)] for h, w in shapes])
        centres, per_pixel = torch.empty(t.length, 2), torch.ones(t.length, 2)
        level_of = torch.zeros(t.length, dtype=torch.int64)
        pos = torch.empty(batch, *t.shape)
        return tokens, pos, None, ratios, refs, shapes, sizes, centres, per_pixel, level_of
    if isinstance(t, QueryState):
        boxes = torch.empty(batch, t.queries, 4) if t.boxes else None
        refs = torch.empty(batch, t.queries, t.coords)
        return torch.empty(batch, *t.shape), torch.empty(batch, *t.shape), refs, boxes, ()
    dtype = torch.int64 if isinstance(t, Ids) else torch.bool if isinstance(t, Mask) else None
    return torch.empty(batch, *t.shape, dtype=dtype)


def expect_image(t: TensorType, what: str) -> Image:
    return expect(t, Image, what)


def expect_tokens(t: TensorType, what: str) -> Tokens:
    return expect(t, Tokens, what)


def expect_mask(t: TensorType, what: str) -> Mask:
    return expect(t, Mask, what)


def expect_pyramid(t: TensorType, what: str) -> Pyramid:
    return expect(t, Pyramid, what)


def expect_multi_scale(t: TensorType, what: str) -> MultiScale:
    return expect(t, MultiScale, what)


def expect_query_state(t: TensorType, what: str) -> QueryState:
    return expect(t, QueryState, what)


def expect_stack(t: TensorType, what: str) -> Stack:
    return expect(t, Stack, what)


def expect_vector(t: TensorType, what: str) -> Vector:
    return expect(t, Vector, what)


def expect_grid(t: Tokens, what: str) -> tuple[int, int]:
    if t.grid is None:
        raise ShapeError(f"{what} needs tokens laid out on a 2-D grid, but receives {t}")
    return t.grid


def conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Output length of a convolution or pooling window along one axis."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def check_divides(divisor: int, total: int, field: str, what: str, hint: str | None = None):
    if divisor <= 0 or total % divisor != 0:
        raise ShapeError(f"{divisor} must divide {what} ({total})", field=field, hint=hint)
