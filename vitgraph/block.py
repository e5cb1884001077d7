"""The ``Block`` base of every primitive block kind, and the hooks core asks of a kind.

A primitive kind is a frozen pydantic params model whose ``kind`` literal names it, with
a shape rule (``infer``) and a builder (``build``). Everything else core needs to know
about a kind is declared on its class, next to it (timm's habit: Swin's file declares its
own ``no_weight_decay``, output format and checkpoint filter): its ``role``, its
``weight_init`` scheme, what it keeps out of weight decay, how its classifier is reset,
how its tables are resampled for another input size, which of its fields act only in
training, which training objective its output needs, and what its module folds into at
inference (``vitgraph.optimize``: BatchNorms into the affine map beside them, a per-channel
scale into the projection before it, an attention scale into the query rows, projections
that read one tensor into one matmul, tensors that depend only on weights and the input
size computed once). Core dispatches on these hooks and never names a kind.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict

from vitgraph.shapes import TensorType
from vitgraph.vocabulary import INIT_SCHEMES, is_training_only

if TYPE_CHECKING:
    import torch

#: what a kind is for: the model API finds features, classifiers and no-decay tables by
#: role (a global ``pooling`` reads the features, a ``head`` classifies them)
Role = Literal[
    "tokenizer",
    "position",
    "token",
    "attention",
    "mlp",
    "norm",
    "pooling",
    "head",
    "conv",
    "block",
    "structural",
    "visual_tokens",
    "misc",
]
#: roles whose parameters are never weight-decayed (timm's ``no_weight_decay``: position
#: tables, prefix tokens, norms)
NO_DECAY_ROLES = frozenset({"position", "token", "norm"})


@dataclass(frozen=True)
class Classifier:
    """How a head kind takes part in timm's head API (``reset_classifier``,
    ``forward_head(pre_logits=True)``, ``num_features``)."""

    #: a new head module for ``classes`` classes (0: the head passes its features
    #: through): ``reset(params, input_types, classes, old_module)``
    reset: Callable[[Any, Sequence[TensorType], int, Any], Any]
    #: emits, in an fx graph, what the head classifies (its pre-logits):
    #: ``pre_logits(params, fx_args, fx_graph)``; None for a head that refines another
    #: classifier's logits and adds no features of its own
    pre_logits: Callable[[Any, Sequence[Any], Any], Any] | None
    #: which input carries the features it classifies (their width is ``num_features``)
    features_input: int = 0
    #: the head reads its own tokens whatever the pooling: ``reset_classifier(n, '')``
    #: keeps the pooling and resets as ``reset_classifier(n)`` (timm's distilled DeiT)
    keeps_pooling: bool = False


def reset_by_rebuilding(params: Any, inputs: Sequence[TensorType], classes: int, old: Any) -> Any:
    """A head rebuilt for ``classes`` classes (its ``classes`` field set); 0: identity."""
    from torch import nn

    if classes == 0:
        return nn.Identity()
    return params.model_copy(update={"classes": classes}).build(*inputs)


def first_input(params: Any, args: Sequence[Any], graph: Any) -> Any:
    """The pre-logits of a head that classifies its first input as it is."""
    return args[0]


#: a linear classifier on its first input (any head kind with a ``classes`` field)
LINEAR_CLASSIFIER = Classifier(reset_by_rebuilding, first_input)


@dataclass(frozen=True)
class Fold:
    """A BatchNorm inside a kind's module that an affine map beside it absorbs at inference.

    In eval mode a BatchNorm is a fixed per-channel affine map, so the ``nn.Linear`` or
    ``nn.Conv`` whose output it normalises computes both at once with rescaled weights
    and a shifted bias (LeViT §4.2: "every linear map is followed by a BatchNorm, so it can
    be fused at inference"). Paths are dotted, relative to the node's module ("" is the
    module itself).
    """

    #: the BatchNorm
    norm: str
    #: the ``nn.Linear`` / ``nn.Conv{1,2,3}d`` on the other side of it
    into: str
    #: the norm normalises the map's input (BatchNorm, then Linear: LeViT's heads)
    before: bool = False
    #: the norm's channels are these output rows ``[start, stop)`` of ``into`` and reach
    #: the norm only through maps that commute with a per-channel affine (attention
    #: weights whose rows sum to 1, an average pool): BoTNet's BatchNorm after attention
    #: folds into the value rows of its qkv projection
    rows: tuple[int, int] | None = None
    #: a wrapper computing exactly the map and the norm (``LinearBN``), replaced by the
    #: folded map so inference skips the wrapper's reshapes
    replace: str | None = None


@dataclass(frozen=True)
class ScaleFold:
    """A constant factor a kind's forward multiplies some output rows of one of its maps
    by (the queries' 1/sqrt(d) of attention, Vaswani et al. §3.2.1): at inference those
    rows absorb it and the attribute holding it becomes 1.0, which the forward skips."""

    #: dotted path of the float attribute holding the factor (``scale``)
    attribute: str
    #: the ``nn.Linear`` / ``nn.Conv`` whose output rows the factor multiplies
    into: str
    #: those rows, as ``[start, stop)`` ranges (LeViT's queries: a slice of each head)
    rows: tuple[tuple[int, int], ...]


def batchnorm_pairs(module: Any, *pairs: tuple[str, str]) -> list[Fold]:
    """A ``Fold(norm, into)`` for each ``(norm, into)`` pair of ``module`` whose norm is a
    BatchNorm (an absent or disabled norm folds nothing)."""
    from torch import nn

    folds = []
    for norm, into in pairs:
        try:
            found = module.get_submodule(norm)
        except AttributeError:
            continue
        if isinstance(found, nn.modules.batchnorm._BatchNorm):
            folds.append(Fold(norm, into))
    return folds


class Block(BaseModel):
    """Base of every primitive block's params model, with the hooks core dispatches on."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    kind: str

    # -- hooks (ClassVars a kind sets in its class body) ---------------------------------
    #: number of inputs the block takes (None: one or more)
    arity: ClassVar[int | None] = 1
    #: what the kind is for (see ``Role``)
    role: ClassVar[str] = "misc"
    #: the name ``role`` had before vitgraph 0.2 (a plugin setting it still works)
    family: ClassVar[str | None] = None
    #: init scheme of the module ``build`` returns (a name in
    #: ``vitgraph.vocabulary.INIT_SCHEMES``); None keeps what ``build`` drew
    weight_init: ClassVar[str | None] = None
    #: parameters kept out of weight decay: True for all of the node's, a set of leaf
    #: names (``relative_position_bias_table``) for those, None for the role's default
    no_weight_decay: ClassVar[bool | frozenset[str] | None] = None
    #: how the kind takes part in the head API when it is a classifier
    classifier: ClassVar[Classifier | None] = None
    #: the whole block acts only in training (identity at inference: dropout, drop-path)
    training_only: ClassVar[bool] = False
    #: the training objective (a plugin name in ``vitgraph.train.objectives``) that the
    #: train-mode output of this kind needs (a distillation head returns two logits)
    objective: ClassVar[str | None] = None
    #: layout of ``forward_features`` when the features are this kind's output and the
    #: reference lays them out differently from tokens (``vitgraph.model.layout``)
    feature_layout: ClassVar[str | None] = None
    #: the module's forward computes tensors from its weights and the fixed input size
    #: alone (a bias table gathered by relative offset, an attention mask): inference
    #: computes them once (``vitgraph.optimize.precompute_constants``)
    precompute: ClassVar[bool] = False
    #: of its token input the kind reads only the prefix tokens (a class-token pooling, a
    #: distillation head): a feature layout that keeps only them (PiT's) may feed it
    reads_prefix_only: ClassVar[bool] = False
    #: the output's patch tokens are this input's, unchanged (CaiT's class-attention
    #: layer puts its new class token back in front of its input's patches): a unit
    #: ending in such a node is not one of the model's intermediates
    #: (``vitgraph.model.intermediates``)
    patch_tokens_from: ClassVar[int | None] = None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        legacy = cls.__dict__.get("family")
        if isinstance(legacy, str):  # plugins written before vitgraph 0.2
            warnings.warn(
                f"{cls.__qualname__}.family is deprecated: name the block's role with "
                f"`role = {legacy!r}`",
                DeprecationWarning,
                stacklevel=2,
            )
            cls.role = legacy
        scheme = cls.__dict__.get("weight_init")
        if isinstance(scheme, str) and scheme not in INIT_SCHEMES:
            raise KeyError(
                f"{cls.__qualname__}: unknown init scheme '{scheme}' "
                f"(known: {', '.join(INIT_SCHEMES)})"
            )

    # -- the two rules every kind implements ---------------------------------------------

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        """Fill omitted dims from the inputs and return (resolved params, output type).

        Raises ``ShapeError`` with the numbers when the inputs do not fit.
        """
        raise NotImplementedError

    def build(self, *inputs: TensorType) -> Any:
        """Return an ``nn.Module``, a ``TensorOp`` or a plain function of the inputs.

        Called with the resolved params and the inferred input types.
        """
        raise NotImplementedError

    # -- optional hooks ------------------------------------------------------------------

    def resample(
        self,
        inputs: Sequence[TensorType],
        name: str,
        table: torch.Tensor,
        target: tuple[int, ...],
        *,
        antialias: bool = True,
        was: Sequence[TensorType] | None = None,
    ) -> torch.Tensor | None:
        """The checkpoint tensor ``name`` (relative to the node) of another input size,
        resized to ``target`` for these inputs; None when the kind cannot (the loader then
        reports a mismatch). Kinds with position or relative-position tables override
        this with the shared math of ``vitgraph.resample``. ``was``: the input types the
        table was made for when known (a built model resized: ``set_input_size``); a
        checkpoint's layout is read off the table itself (a square grid)."""
        return None

    # -- what the module folds into at inference (vitgraph.optimize) -------------------
    # Each takes the module ``build`` returned (None for a function or tensor op) and
    # names submodules by dotted path; the passes check every claim they rely on (types,
    # shapes, a single user) and leave a node alone when one does not hold.

    def batchnorm_folds(self, module: Any) -> Sequence[Fold]:
        """The BatchNorms of the module that fold into an affine map beside them."""
        return ()

    def constant_scales(self, module: Any) -> Sequence[ScaleFold]:
        """Constant factors the module's forward applies to some output rows of its maps
        (an attention scale on the queries), which fold into those rows."""
        return ()

    def channel_scale(self, module: Any) -> torch.Tensor | None:
        """What the node multiplies its one input by at inference, per channel of the
        feature axis (a vector) or as a whole (a 0-d tensor): LayerScale's gamma; None
        for a node that does not only scale. It folds into the ``output_affine`` of the
        node before it."""
        return None

    def output_affine(self, module: Any) -> str | None:
        """The ``nn.Linear`` / ``nn.Conv`` whose output the module returns, channels along
        the feature axis (reshaped, never mixed; eval-time dropout after it is fine): a
        per-channel scale after the node folds into its rows."""
        return None

    def fused_projections(self, module: Any) -> Sequence[tuple[str, ...]]:
        """Groups of ``nn.Linear`` in the module that read the same tensor (CaiT's class
        attention: k and v): inference runs each group as one matmul."""
        return ()

    def eval_identities(self, module: Any) -> Sequence[str]:
        """Submodules that are identities at inference: every ``nn.Dropout`` and every
        module whose class declares ``training_only = True`` (stochastic depth)."""
        from torch import nn

        if module is None or not isinstance(module, nn.Module):
            return ()
        return [
            path
            for path, sub in module.named_modules()
            if path
            and (
                isinstance(sub, nn.modules.dropout._DropoutNd)
                or getattr(type(sub), "training_only", False)
            )
        ]

    @classmethod
    def training_fields(cls) -> frozenset[str]:
        """Fields marked ``TrainingOnly`` (dropout and stochastic-depth rates)."""
        return frozenset(
            name for name, info in cls.model_fields.items() if is_training_only(info.metadata)
        )

    @classmethod
    def decay_exempt(cls) -> bool | frozenset[str]:
        """What of the node's parameters stays out of weight decay (``no_weight_decay``,
        else the role's default)."""
        if cls.no_weight_decay is not None:
            return cls.no_weight_decay
        return cls.role in NO_DECAY_ROLES

    @classmethod
    def classifier_rule(cls) -> Classifier | None:
        """The kind's ``classifier``; a head with a ``classes`` field is a linear one."""
        if cls.classifier is not None:
            return cls.classifier
        if cls.role == "head" and "classes" in cls.model_fields:
            return LINEAR_CLASSIFIER
        return None


@dataclass
class TensorOp:
    """A block realised as ``fn(*inputs, tensor)`` with ``tensor`` stored at the node's own
    path (``cls_token``, ``pos_embed``), so state_dict keys read like the spec."""

    tensor: Any  # nn.Parameter or a buffer tensor
    fn: Callable[..., Any]
    persistent: bool = True
    kwargs: dict[str, Any] = field(default_factory=dict)  # constants passed to ``fn``


@dataclass
class FunctionOp:
    """A parameter-free block realised as ``fn(*inputs, **kwargs)`` (a ``call_function``)."""

    fn: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
