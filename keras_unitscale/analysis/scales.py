"""Scale tracking: the std of every layer's output and of its gradient, and format headroom.

`track_scales(model, x, y)` reruns a Functional or Sequential model layer by layer on `x`,
keeping every layer's output, and gets the gradient of the loss with respect to each output by
adding a zero "probe" tensor to it and pulling the loss back to the probes
(`keras_unitscale.backend.vjp`). Each layer gives two rows, `forward` (its output) and
`backward` (the gradient flowing into that output), with the std, the largest magnitude, and
for FP16, E4M3 and E5M2 the fraction of values that would underflow (a nonzero value that
rounds to zero) or overflow (a finite value past the largest finite one). A unit-scaled model
should sit near std 1 in both directions, well inside every format's range; a plain Keras
model usually does not, which is why it needs loss scaling in FP16.

The backward pass starts from the loss: `loss(y, y_pred)` if `loss` is given, else the model's
compiled loss when `y` is given, else a fixed unit-normal gradient at the model outputs (the
loss `sum(y_pred * g)`), the upstream gradient of the unit-scaling tests.

The table (`ScaleTable`, its columns and per-tensor statistics) and `plot_scales` live in
`keras_unitscale.analysis.table`; they are re-exported here.
"""

import json
import os

import keras
import numpy as np
from keras import ops

from keras_unitscale.backend import get_keras_mask, keras_internals, set_keras_mask, vjp
from keras_unitscale.analysis.table import (  # noqa: F401  (re-exported: the old home)
    COLUMNS,
    TRACKED_FORMATS,
    ScaleTable,
    plot_scales,
    tensor_stats,
)

def _is_float(t):
    return "float" in keras.backend.standardize_dtype(t.dtype)


def _copy_mask(source, target):
    # Keras carries masks on the tensor; the probe sum is a new tensor.
    mask = get_keras_mask(source)
    if mask is not None:
        set_keras_mask(target, mask)
    return target


def _inject(op, kwargs, training):
    if training is not None and "training" in getattr(op, "_call_context_args", ()):
        kwargs = dict(kwargs, training=training)
    return kwargs


def _run_model(model, inputs, visit, training, prefix=""):
    """Runs `model` op by op; `visit(name, op, outputs)` may replace each op's outputs."""
    Functional, Sequential = keras_internals.functional_class(), keras.Sequential
    if isinstance(model, Sequential):
        if model._functional is not None:
            return _run_model(model._functional, inputs, visit, training, prefix)
        x = inputs
        for layer in model.layers:
            kwargs = {"training": training} if layer._call_has_training_arg else {}
            x = visit(prefix + layer.name, layer, layer(x, **kwargs))
        return x
    if not isinstance(model, Functional):
        raise ValueError(
            "`track_scales` needs a Functional or Sequential model, whose graph it can walk; "
            f"received {type(model).__name__}. Wrap the layers in keras.Model(inputs, outputs)."
        )

    def operation_fn(op):
        def call(*args, **kwargs):
            if isinstance(op, (Functional, Sequential)):
                # A nested model (a backbone inside a task): walk it too.
                return _run_model(op, args[0], visit, training, prefix + op.name + "/")
            outputs = op(*args, **_inject(op, kwargs, training))
            return visit(prefix + op.name, op, outputs)

        return call

    inputs = model._standardize_inputs(inputs)
    return model._run_through_graph(inputs, operation_fn=operation_fn)


def _float_leaves(outputs):
    return [t for t in keras.tree.flatten(outputs) if hasattr(t, "dtype") and _is_float(t)]


def _loss_fn(model, x, y, loss, cotangent_seed):
    if loss is not None:
        if y is None:
            raise ValueError("`loss` needs `y`, the targets it compares the outputs with.")
        fn = keras.losses.get(loss) if isinstance(loss, str) else loss
        return lambda y_pred: fn(y, y_pred)
    if y is not None:
        if not getattr(model, "compiled", False) or getattr(model, "_compile_loss", None) is None:
            raise ValueError(
                "`y` was given but the model has no compiled loss: compile it or pass `loss`."
            )

        def compiled(y_pred):
            # The scope keeps the loss trackers' updates out of the model's metrics.
            with keras.StatelessScope():
                return model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)

        return compiled
    rng = np.random.default_rng(cotangent_seed)

    def unit_normal_pullback(y_pred):
        total = 0.0
        for t in _float_leaves(y_pred):
            g = rng.standard_normal(tuple(t.shape)).astype("float32")
            total = total + ops.sum(ops.cast(t, "float32") * g)
        return total

    return unit_normal_pullback


def track_scales(model, x, y=None, loss=None, training=False, cotangent_seed=0):
    """Measures every layer's output and gradient scale on one batch.

    Args:
        model: a Functional or Sequential Keras model (nested models are walked too, their
            layers named `outer/inner`).
        x: one batch of inputs (as `model(x)` takes them).
        y: optional targets; with them the backward pass starts from the compiled loss.
        loss: optional loss (a name or a callable `loss(y_true, y_pred)`), used instead of the
            compiled one; needs `y`.
        training: passed to layers that take `training` (dropout).
        cotangent_seed: seed of the unit-normal output gradient used when `y` is None.

    Returns:
        A `ScaleTable`: two rows (forward, backward) per layer call with a float output, in
        the order the layers run.

    Example:
    >>> import keras
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> from keras_unitscale.analysis import track_scales
    >>> inputs = keras.Input((64,))
    >>> h = ku.layers.Dense(128, activation="gelu", name="hidden")(inputs)
    >>> model = keras.Model(inputs, ku.layers.Dense(16, name="out")(h))
    >>> x = np.random.default_rng(0).standard_normal((256, 64)).astype("float32")
    >>> table = track_scales(model, x)
    >>> [(r["layer"], r["direction"]) for r in table]
    [('hidden', 'forward'), ('hidden', 'backward'), ('out', 'forward'), ('out', 'backward')]
    >>> bool(all(0.8 < r["std"] < 1.25 for r in table.select(direction="forward")))
    True
    """
    x = keras.tree.map_structure(ops.convert_to_tensor, x)
    loss_fn = _loss_fn(model, x, y, loss, cotangent_seed)
    records = []
    names_seen = {}

    def record(name, op, outputs):
        if not isinstance(op, keras.layers.Layer):
            return outputs
        leaves = _float_leaves(outputs)
        if leaves:
            count = names_seen.get(name, 0) + 1
            names_seen[name] = count
            label = name if count == 1 else f"{name}#{count}"
            specs = [(tuple(t.shape), keras.backend.standardize_dtype(t.dtype)) for t in leaves]
            records.append((label, type(op).__name__, specs))
        return outputs

    # Pass 1: which layers give float outputs, and their shapes (the probes' shapes).
    _run_model(model, x, record, training)
    probes = [ops.zeros(shape, dtype) for _, _, specs in records for shape, dtype in specs]

    def forward(*probe_values):
        queue = list(probe_values)
        activations = []

        def add_probes(name, op, outputs):
            if not isinstance(op, keras.layers.Layer) or not _float_leaves(outputs):
                return outputs
            flat = keras.tree.flatten(outputs)
            new = []
            for t in flat:
                if hasattr(t, "dtype") and _is_float(t):
                    t = _copy_mask(t, t + queue.pop(0))
                    activations.append(t)
                new.append(t)
            return keras.tree.pack_sequence_as(outputs, new)

        y_pred = _run_model(model, x, add_probes, training)
        return (ops.cast(loss_fn(y_pred), "float32"), *activations)

    outputs, pullback = vjp(forward, *probes)
    activations = outputs[1:]
    cotangent = (ops.ones((), "float32"), *[ops.zeros_like(a) for a in activations])
    grads = pullback(cotangent)

    table = ScaleTable()
    i = 0
    for label, cls, specs in records:
        n = len(specs)
        acts, gs = activations[i : i + n], grads[i : i + n]
        i += n
        gs = [ops.zeros_like(a) if g is None else g for a, g in zip(acts, gs)]
        for direction, values in (("forward", acts), ("backward", gs)):
            table.append({"layer": label, "class": cls, "direction": direction, **tensor_stats(values)})
    return table


class ScaleTracker(keras.callbacks.Callback):
    """Records `track_scales` on a fixed batch every `every_n_steps` training steps.

    Rows (with a `step` field; step 0 is before training) accumulate in `history`, a
    `ScaleTable`. With `log_dir`, each measurement is also appended to
    `log_dir/scales.jsonl` and written as `log_dir/scales_step_{step}.txt` (and `.png` when
    `plot=True`).

    Args:
        x, y: the batch to measure on (`y` optional, see `track_scales`).
        every_n_steps: measure after every this many training batches.
        log_dir: optional directory for the logs.
        loss: optional loss for the backward pass (see `track_scales`).
        plot: also write a PNG per measurement (needs `log_dir`).
        at_start: also measure before the first step.

    Example:
    >>> import keras
    >>> import numpy as np
    >>> import keras_unitscale as ku
    >>> from keras_unitscale.analysis import ScaleTracker
    >>> model = keras.Sequential([keras.Input((8,)), ku.layers.Dense(2, readout=True)])
    >>> model.compile("sgd", "mse")
    >>> x, y = np.ones((16, 8), "float32"), np.zeros((16, 2), "float32")
    >>> tracker = ScaleTracker(x, y, every_n_steps=2)
    >>> _ = model.fit(x, y, batch_size=4, epochs=1, callbacks=[tracker], verbose=0)
    >>> sorted({r["step"] for r in tracker.history})
    [0, 2, 4]
    """

    def __init__(self, x, y=None, every_n_steps=100, log_dir=None, loss=None, plot=False,
                 at_start=True):
        super().__init__()
        valid = isinstance(every_n_steps, int) and not isinstance(every_n_steps, bool)
        if not valid or every_n_steps < 1:
            raise ValueError(f"`every_n_steps` must be a positive int; received {every_n_steps!r}.")
        if plot and log_dir is None:
            raise ValueError("`plot=True` needs `log_dir`, where the PNGs go.")
        self.x, self.y, self.loss = x, y, loss
        self.every_n_steps = every_n_steps
        self.log_dir = log_dir
        self.plot = plot
        self.at_start = at_start
        self.history = ScaleTable()
        self.step = 0

    def on_train_begin(self, logs=None):
        if self.at_start and self.step == 0:
            self._measure()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every_n_steps == 0:
            self._measure()

    def _measure(self):
        table = ScaleTable(
            dict(row, step=self.step)
            for row in track_scales(self.model, self.x, self.y, loss=self.loss)
        )
        self.history.extend(table)
        if self.log_dir is not None:
            os.makedirs(self.log_dir, exist_ok=True)
            with open(os.path.join(self.log_dir, "scales.jsonl"), "a") as f:
                for row in table:
                    f.write(json.dumps(row) + "\n")
            stem = os.path.join(self.log_dir, f"scales_step_{self.step}")
            with open(stem + ".txt", "w") as f:
                f.write(table.to_text() + "\n")
            if self.plot:
                plot_scales(table, stem + ".png")
        return table
