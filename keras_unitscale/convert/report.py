"""`ConversionReport`: what `unit_scale` did to each layer of a model."""

import dataclasses


@dataclasses.dataclass
class ConversionReport:
    """What `unit_scale` did to each layer of a model.

    Attributes:
        swapped: `(name, keras_class, unit_scaled_class)` for each replaced layer.
        residuals: `(add_layer_name, tau)` for each `Add` that became a residual connection.
        readouts: names of the `Dense` layers made readouts.
        dropped_arguments: `{name: [argument, ...]}`: arguments not carried over (the
            initializers, which unit scaling replaces by N(0, 1)).
        kept: `(name, class, reason)` for each layer kept as it was (config and weights).
        notes: `{name: note}`: what a swapped layer's kept arguments mean for its scale
            (a `Bidirectional` that sums or averages its two unit outputs, say).

    Layers inside a nested model are named `outer_model_layer/inner_layer`.
    """

    swapped: list = dataclasses.field(default_factory=list)
    residuals: list = dataclasses.field(default_factory=list)
    readouts: list = dataclasses.field(default_factory=list)
    dropped_arguments: dict = dataclasses.field(default_factory=dict)
    kept: list = dataclasses.field(default_factory=list)
    notes: dict = dataclasses.field(default_factory=dict)

    def __str__(self):
        lines = [f"unit_scale: {len(self.swapped)} layers swapped, "
                 f"{len(self.residuals)} residual connections, {len(self.kept)} kept"]
        for name, old, new in self.swapped:
            extra = " (readout)" if name in self.readouts else ""
            dropped = self.dropped_arguments.get(name)
            if dropped:
                extra += f"; dropped {', '.join(dropped)}"
            if name in self.notes:
                extra += f"; {self.notes[name]}"
            lines.append(f"  swapped  {name}: {old} -> {new}{extra}")
        for name, tau in self.residuals:
            lines.append(f"  residual {name}: tau={tau:.4g}")
        for name, cls, reason in self.kept:
            lines.append(f"  kept     {name} ({cls}): {reason}")
        return "\n".join(lines)
