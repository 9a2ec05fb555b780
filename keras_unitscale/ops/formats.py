"""What a layer's `fp8` attribute holds, and the number formats it casts to.

`FP8Simulation` (E4M3 matmul operands, E5M2 output gradients, computed in float32) and the
helpers layers use for their `fp8` setting (`fp8_from_config`, `fp8_to_config`,
`attach_fp8`, `for_matmul`) live here. The formats and the casts themselves
(`Format`, `FORMATS`, `get_format`, `cast_to_format`, `quantize_fwd`, `quantize_bwd`) live in
`keras_unitscale.ops.casts` and are re-exported here, so both import paths work.

Dependencies point one way: `casts` <- `formats` <- `fp8_native` (`FP8Native` subclasses
`FP8Simulation`). `keras_unitscale.ops` (the package, which Python imports before any of its
modules) imports `fp8_native`, so `FP8Native` is registered with Keras whenever
`fp8_from_config` can run.
"""

import keras

from keras_unitscale.ops.casts import (  # noqa: F401  (re-exported: the old import path)
    FORMATS,
    OVERFLOWS,
    ROUNDINGS,
    Format,
    _check_choice,
    cast_to_format,
    get_format,
    quantize_bwd,
    quantize_fwd,
)


@keras.saving.register_keras_serializable(package="keras_unitscale")
class FP8Simulation:
    """What a layer's `fp8` attribute holds: casts for the matmul operands and gradients.

    `keras_unitscale.ops.linear`, `readout` and `matmul` apply `cast_forward` to both matmul
    operands and `cast_gradient` to the matmul output (identity forward, casts the gradient
    flowing back into it), so the product sees E4M3 weights and activations and produces its
    operand gradients from an E5M2 output gradient, as in u-muP's FP8 training. Unit scaling
    makes plain casting enough: no per-tensor scale factors. Use
    `keras_unitscale.precision.simulate_fp8` to switch a whole model.

    Args:
        forward_format: format of the matmul operands, or None to leave them unchanged.
        gradient_format: format of the gradient of the matmul output, or None.
        rounding: `"nearest"` or `"stochastic"` (see `cast_to_format`).
        overflow: `"saturate"` or `"inf_nan"` (see `cast_to_format`).
        seed: int seed for stochastic rounding. The simulation then draws from its own
            `keras.random.SeedGenerator` (`seed_generator`), made here, eagerly. A compiled
            JAX step can only use it if a layer tracks it: `simulate_fp8` does that.
        keep_matmuls: matmuls inside the layer to leave in the compute dtype, by role
            (`"attention_output"`: an attention layer's output projection); see `for_matmul`.

    Example:
    >>> import numpy as np
    >>> from keras_unitscale import ops as uops
    >>> from keras_unitscale.ops.formats import FP8Simulation
    >>> sim = FP8Simulation()
    >>> x = np.full((2, 4), 1.1, "float32"); w = np.ones((4, 3), "float32")
    >>> np.asarray(uops.linear(x, w, fp8=sim))[0].tolist()  # 1.1 -> 1.125 in E4M3
    [2.25, 2.25, 2.25]
    """

    def __init__(
        self,
        forward_format="e4m3",
        gradient_format="e5m2",
        rounding="nearest",
        overflow="saturate",
        seed=None,
        keep_matmuls=(),
    ):
        formats = {"forward_format": forward_format, "gradient_format": gradient_format}
        for name, value in formats.items():
            if value is not None:
                try:
                    get_format(value)
                except ValueError as err:
                    raise ValueError(f"`{name}`: {err}") from None
        _check_choice(rounding, "rounding", ROUNDINGS)
        _check_choice(overflow, "overflow", OVERFLOWS)
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError(f"`seed` must be None or an int; received {seed!r}.")
        self.forward_format = forward_format
        self.gradient_format = gradient_format
        self.rounding = rounding
        self.overflow = overflow
        self.seed = seed
        self.keep_matmuls = _matmul_roles(keep_matmuls)
        self.seed_generator = None
        if rounding == "stochastic":
            self.seed_generator = keras.random.SeedGenerator(seed, name="fp8_seed_generator")

    def _seed(self):
        return self.seed_generator

    def cast_forward(self, t):
        """Casts a matmul operand to `forward_format` (straight-through gradient)."""
        if self.forward_format is None:
            return t
        return quantize_fwd(t, self.forward_format, self.rounding, self.overflow, self._seed())

    def cast_gradient(self, t):
        """Identity forward; casts the gradient flowing back into `t` to `gradient_format`."""
        if self.gradient_format is None:
            return t
        return quantize_bwd(t, self.gradient_format, self.rounding, self.overflow, self._seed())

    def get_config(self):
        return {
            "forward_format": self.forward_format,
            "gradient_format": self.gradient_format,
            "rounding": self.rounding,
            "overflow": self.overflow,
            "seed": self.seed,
            "keep_matmuls": tuple(self.keep_matmuls),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "keep_matmuls" in config:
            config["keep_matmuls"] = tuple(config["keep_matmuls"])  # JSON gives a list
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"FP8Simulation({args})"

    def __eq__(self, other):
        return isinstance(other, FP8Simulation) and self.get_config() == other.get_config()

    __hash__ = None


MATMUL_ROLES = ("attention_output",)


def _matmul_roles(roles):
    if isinstance(roles, str):
        roles = (roles,)
    roles = tuple(roles)
    for role in roles:
        if role not in MATMUL_ROLES:
            raise ValueError(
                f"`keep_matmuls` must hold matmul roles from {MATMUL_ROLES}; received {role!r}."
            )
    return roles


def for_matmul(fp8, role):
    """The FP8 setting for one matmul of a layer: `fp8`, or None if its `keep_matmuls` keeps
    that role in the compute dtype (u-muP's "critical" matmuls).

    Example:
    >>> from keras_unitscale.ops.formats import FP8Simulation, for_matmul
    >>> kept = FP8Simulation(keep_matmuls=("attention_output",))
    >>> for_matmul(kept, "attention_output") is None, for_matmul(kept, "other") is kept
    (True, True)
    """
    if fp8 is None or role in getattr(fp8, "keep_matmuls", ()):
        return None
    return fp8


def fp8_from_config(value):
    """A layer's `fp8` setting from its config entry: None, an FP8 object, or its serialized
    form (`keras.saving.serialize_keras_object`). Layers call it in their constructor.

    Example:
    >>> import keras
    >>> from keras_unitscale.ops.formats import FP8Simulation, fp8_from_config
    >>> fp8_from_config(keras.saving.serialize_keras_object(FP8Simulation())) == FP8Simulation()
    True
    """
    if value is None or hasattr(value, "cast_forward"):
        return value
    if isinstance(value, dict):
        # FP8Native is registered: the package `keras_unitscale.ops` imports fp8_native.
        result = keras.saving.deserialize_keras_object(value)
        if hasattr(result, "cast_forward"):
            return result
    raise ValueError(
        "`fp8` must be None, an FP8Simulation / FP8Native, or the serialized form of one; "
        f"received {value!r:.100}."
    )


def fp8_to_config(fp8):
    """The config entry for a layer's `fp8` setting (None stays None)."""
    return None if fp8 is None else keras.saving.serialize_keras_object(fp8)


def attach_fp8(layer, fp8):
    """Sets `layer.fp8` (None or an FP8 setting), tracking a stochastic-rounding simulation's
    `SeedGenerator` on the layer (as Keras' random layers track theirs) so a compiled JAX step
    carries its state; it is state, not a weight, so saved weights are unchanged."""
    old = getattr(layer, "fp8", None)
    generators = getattr(layer, "_seed_generators", None)
    if generators is not None:
        if getattr(old, "seed_generator", None) is not None:
            for j in reversed(range(len(generators))):
                if generators[j] is old.seed_generator:
                    del generators[j]
        if getattr(fp8, "seed_generator", None) is not None:
            generators.append(fp8.seed_generator)
    layer.fp8 = fp8
