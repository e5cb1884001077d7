"""One report of what a weights load did with every key, and one error family.

The same ``LoadReport`` comes back whether the tensors came from a vitgraph safetensors
file (``build --weights``, ``export --weights``, ``load_weights``), a reference's
checkpoint (timm's, through its key map), a reference model's state_dict (``from_timm``,
``from_hf``) or an earlier build of an edited graph (``weights_from=``); a load that must
fit and does not raises ``WeightsError`` listing every key that did not, one per line.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class WeightsError(ValueError):
    """Weights that are unreadable or do not fit the model (every misfit listed)."""


#: the name this error had before vitgraph 0.2 (``vitgraph.checkpoints.CheckpointError``)
CheckpointError = WeightsError

Shape = tuple[int, ...]


@dataclass
class LoadReport:
    """What a weights load did with each key, in the model's order."""

    format: str  # "vitgraph" (our safetensors), "timm", "state_dict", "carry", ...
    source: str = ""  # whose weights (a path and what its metadata says, or a model)
    total: int = 0  # tensors in the model's state_dict
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model keys the source lacks
    unexpected: list[str] = field(default_factory=list)  # source keys with no place
    mismatched: list[tuple[str, Shape, Shape]] = field(
        default_factory=list
    )  # (key, source shape, model shape)
    retyped: list[tuple[str, str, str]] = field(
        default_factory=list
    )  # (key, source dtype, model dtype): a float where an int is kept, or the reverse
    resampled: list[str] = field(default_factory=list)  # tables resized to the model's input
    reset: list[str] = field(default_factory=list)  # classifier keys left freshly initialised
    shapes: dict[str, Shape] = field(default_factory=dict, repr=False)  # model key -> shape
    source_shapes: dict[str, Shape] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched or self.retyped)

    # an edit's carry (``Graph.build(weights_from=...)``) reads the same report
    @property
    def carried(self) -> list[str]:
        """The keys copied from the earlier model."""
        return list(self.loaded)

    @property
    def reinitialized(self) -> list[str]:
        """Every model key that kept its fresh init, in the model's order."""
        done = set(self.loaded)
        return [k for k in self.shapes if k not in done]

    def problems(self) -> list[str]:
        """One line per key that does not fit: missing, unexpected, mis-shaped, retyped."""
        lines = [f"missing: {k} {self.shapes.get(k, ())}" for k in self.missing]
        lines += [f"unexpected: {k} {self.source_shapes.get(k, ())}" for k in self.unexpected]
        lines += [
            f"mismatched: {k} is {theirs} in the file, {ours} in the model"
            for k, theirs, ours in self.mismatched
        ]
        lines += [
            f"mismatched: {k} is {theirs} in the file, {ours} in the model"
            for k, theirs, ours in self.retyped
        ]
        return lines

    def __str__(self) -> str:
        lines = [f"{len(self.loaded)} of {self.total} tensors loaded from {self.source}"]
        for label, keys in (("resampled", self.resampled), ("head reset", self.reset)):
            if keys:
                lines.append(f"{label}: {', '.join(keys)}")
        return "\n".join(lines + self.problems())

    def error(self, what: str) -> WeightsError:
        """The error for a load that had to fit (``what``: "<file> does not fit the
        model"), listing every key that did not."""
        lines = self.problems()
        return WeightsError(
            f"{what}: it holds the weights of {self.source}; {len(lines)} of {self.total} "
            "tensors differ\n  " + "\n  ".join(lines)
        )
