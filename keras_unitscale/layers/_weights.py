"""What the layers share about their weights: Keras' regularizers and constraints, and a
warning when a user's initializer breaks unit scale."""

import warnings

import keras
import numpy as np


def _get(kind, example, value, name):
    module = getattr(keras, f"{kind}s")
    try:
        return module.get(value)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"`{name}` must be a Keras {kind} (e.g. {example}) or None; received "
            f"{value!r:.80}. {e}"
        ) from None


def regularizer(value, name):
    """`keras.regularizers.get`, with an error that names the argument."""
    return _get("regularizer", "'l2' or keras.regularizers.L2(1e-4)", value, name)


def constraint(value, name):
    """`keras.constraints.get`, with an error that names the argument."""
    return _get("constraint", "'non_neg' or keras.constraints.MaxNorm(3)", value, name)


def set_kernel_and_bias_options(layer, kernel_regularizer, bias_regularizer,
                                kernel_constraint, bias_constraint):
    """Checks and stores Keras' kernel/bias regularizers and constraints on `layer`."""
    layer.kernel_regularizer = regularizer(kernel_regularizer, "kernel_regularizer")
    layer.bias_regularizer = regularizer(bias_regularizer, "bias_regularizer")
    layer.kernel_constraint = constraint(kernel_constraint, "kernel_constraint")
    layer.bias_constraint = constraint(bias_constraint, "bias_constraint")


def kernel_and_bias_config(layer):
    """What `set_kernel_and_bias_options` stored (and the activity regularizer), serialized."""
    return {
        key: keras.saving.serialize_keras_object(getattr(layer, key))
        for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer",
                    "kernel_constraint", "bias_constraint")
    }


def serialize(config, **objects):
    """Adds Keras-serialized regularizers, constraints and initializers to `config`."""
    for key, value in objects.items():
        config[key] = keras.saving.serialize_keras_object(value)
    return config


def warn_if_not_unit(variable, name, layer):
    """Warns when a weight drawn by a user's initializer is far from unit variance.

    Unit-scaled layers multiply by fixed scales that assume N(0, 1) weights: the scales, not
    the initializer, set the size of each output. `glorot_uniform`, Keras' default, draws
    weights of std `sqrt(2 / (fan_in + fan_out))` (0.04 for 512 x 512), which would shrink
    the layer's outputs by that factor at initialisation.
    """
    values = np.asarray(keras.ops.convert_to_numpy(variable.value), "float64")
    if values.size < 16:
        return
    rms = float(np.sqrt(np.mean(values**2)))
    if not 0.5 <= rms <= 2.0:
        warnings.warn(
            f"{type(layer).__name__} {layer.name!r}: `{name}` drew weights of RMS {rms:.3g}. "
            "Unit-scaled layers expect N(0, 1) weights (their fixed scales, not the "
            "initializer, set each output's size), so this layer starts "
            f"{rms:.3g} times off unit scale. Leave `{name}` unset for N(0, 1).",
            UserWarning,
            stacklevel=3,
        )


# --- What each weight is, for u-muP's per-weight learning rates -------------------------------
#
# A layer declares every weight's role when it creates it (`declare`); a transformer block also
# declares how many blocks its stack has (`declare_depth`). `keras_unitscale.optimizers` reads
# these facts, never variable names, to give each weight its learning-rate multiplier.

ROLES = ("weight", "embedding", "bias", "norm", "readout")


class WeightRole:
    """A weight's role in u-muP (`ROLES`), the fan-in (or, for an embedding table, the width)
    its rule needs, and the depth of the residual stack it sits in (None outside one)."""

    __slots__ = ("role", "fan_in", "depth")

    def __init__(self, role, fan_in=None, depth=None):
        if role not in ROLES:
            raise ValueError(f"`role` must be one of {list(ROLES)}; received {role!r}.")
        self.role, self.fan_in, self.depth = role, fan_in, depth

    def __repr__(self):
        return f"WeightRole({self.role!r}, fan_in={self.fan_in}, depth={self.depth})"


_ATTRIBUTE = "_unitscale_role"


def declare(variable, role, fan_in=None):
    """Records `variable`'s u-muP role (and the fan-in, or an embedding's width) on it.

    Returns the variable, so that `self.w = declare(self.add_weight(...), "weight", n)` reads
    in one line. `None` (a weight a layer did not create) is passed through.
    """
    if variable is None:
        return None
    if role in ("weight", "embedding") and not (isinstance(fan_in, int) and fan_in > 0):
        raise ValueError(f"A {role!r} weight needs a positive `fan_in`; received {fan_in!r}.")
    previous = getattr(variable, _ATTRIBUTE, None)
    depth = previous.depth if previous is not None else None
    object.__setattr__(variable, _ATTRIBUTE, WeightRole(role, fan_in, depth))
    return variable


def declare_depth(layer, depth):
    """Marks every weight `layer` holds as inside a residual branch of a `depth`-block stack."""
    if depth is None:
        return
    for variable in layer.weights:
        role = getattr(variable, _ATTRIBUTE, None)
        if role is not None:
            role.depth = int(depth)


def role_of(variable):
    """The `WeightRole` a keras_unitscale layer declared for `variable`, or None."""
    return getattr(variable, _ATTRIBUTE, None)
