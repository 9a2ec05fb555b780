"""Keras' Adam, AdamW and SGD with u-muP's per-weight learning rates (see `rules`)."""

import keras

from keras_unitscale.layers._validation import positive_number
from keras_unitscale.optimizers import rules


class _UnitScaledOptimizer:
    """Mixed into a Keras optimizer: each weight's step is the rate times its multiplier.

    The multipliers are read from the roles keras_unitscale's layers declared on their
    weights (`rules.lr_multiplier`) when the optimizer is built; the update itself is Keras'
    (so schedules, gradient clipping, accumulation, EMA, loss scaling and both backends'
    distribution paths are unchanged).
    """

    _rule = rules.ADAM

    def _init_unit_scaling(self, learning_rate, independent_weight_decay, peak_learning_rate):
        self._learning_rate_argument = learning_rate
        self.independent_weight_decay = bool(independent_weight_decay)
        if peak_learning_rate is not None:
            peak_learning_rate = positive_number(peak_learning_rate, "peak_learning_rate")
        self.peak_learning_rate = peak_learning_rate
        self._lr_multipliers = None
        if self.independent_weight_decay and self.weight_decay:
            if self._peak() is None:
                raise ValueError(
                    "`weight_decay` is independent of the learning rate (a weight shrinks by "
                    "`weight_decay` per step at the schedule's peak), but the peak of "
                    f"`learning_rate`={learning_rate!r} is unknown: pass "
                    "`peak_learning_rate`, or `independent_weight_decay=False` for Keras' "
                    "`weight_decay * learning_rate`."
                )

    def _peak(self):
        if self.peak_learning_rate is not None:
            return self.peak_learning_rate
        return rules.peak_learning_rate(self._learning_rate_argument)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._lr_multipliers = [rules.lr_multiplier(v, self._rule) for v in variables]

    @property
    def learning_rate_multipliers(self):
        """`{variable.path: multiplier}` for the variables the optimizer was built with."""
        if self._lr_multipliers is None:
            return {}
        return {v.path: m for v, m in zip(self._trainable_variables, self._lr_multipliers)}

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self._lr_multipliers[self._get_variable_index(variable)]
        if multiplier != 1.0:
            learning_rate = learning_rate * multiplier
        return super().update_step(gradient, variable, learning_rate)

    def _apply_weight_decay(self, variables):
        if not self.weight_decay or not self.independent_weight_decay:
            return super()._apply_weight_decay(variables)
        # Keras shrinks by `weight_decay * lr_t`; dividing by the peak makes that
        # `weight_decay * lr_t / peak`, independent of the rate's size.
        user = self.weight_decay
        self.weight_decay = user / self._peak()
        try:
            return super()._apply_weight_decay(variables)
        finally:
            self.weight_decay = user

    def get_config(self):
        config = super().get_config()
        config.update(independent_weight_decay=self.independent_weight_decay,
                      peak_learning_rate=self.peak_learning_rate)
        return config


_COMMON_DOC = """
    Args:
        learning_rate: the base rate, a float or a `keras.optimizers.schedules` schedule;
            each weight steps at the rate times its u-muP multiplier
            (`keras_unitscale.optimizers.lr_multiplier`), so the best base rate is far
            larger than plain Keras' (about {typical} for our models).
        weight_decay: with `independent_weight_decay` (the default), the fraction a weight
            shrinks by per step at the schedule's peak, whatever the rate (Keras multiplies
            it by the rate: 0.004 there is 4e-6 per step at `lr=1e-3`).
        independent_weight_decay: False for Keras' `weight_decay * learning_rate`.
        peak_learning_rate: the schedule's largest rate, for independent weight decay when
            the schedule's config does not tell it.
        **kwargs: the rest of the Keras optimizer's arguments.
"""


@keras.saving.register_keras_serializable(package="keras_unitscale")
class AdamW(_UnitScaledOptimizer, keras.optimizers.AdamW):
    __doc__ = """Keras' `AdamW` with u-muP's per-weight learning rates; the default of
    `UnitScaledModel.compile()`.
    """ + _COMMON_DOC.format(typical="2**-1 to 2**2") + """
    Example:
    >>> import keras, numpy as np
    >>> import keras_unitscale as ku
    >>> inputs = keras.Input((8,))
    >>> hidden = ku.layers.Dense(32, activation="relu")
    >>> model = ku.models.UnitScaledModel(inputs, ku.layers.Dense(4, readout=True)(hidden(inputs)))
    >>> model.compile(optimizer=ku.optimizers.AdamW(learning_rate=0.5, weight_decay=1e-4))
    >>> x = np.random.default_rng(0).standard_normal((16, 8)).astype("float32")
    >>> _ = model.fit(x, np.arange(16) % 4, epochs=1, verbose=0)
    >>> model.optimizer.learning_rate_multipliers[hidden.kernel.path]  # 8 ** -0.5
    0.3535533905932738
    """

    def __init__(self, learning_rate=1.0, weight_decay=0.0, *args,
                 independent_weight_decay=True, peak_learning_rate=None, **kwargs):
        super().__init__(learning_rate, weight_decay, *args, **kwargs)
        self._init_unit_scaling(learning_rate, independent_weight_decay, peak_learning_rate)


@keras.saving.register_keras_serializable(package="keras_unitscale")
class Adam(_UnitScaledOptimizer, keras.optimizers.Adam):
    __doc__ = """Keras' `Adam` with u-muP's per-weight learning rates.
    """ + _COMMON_DOC.format(typical="2**-1 to 2**2") + """
    Example:
    >>> import keras_unitscale as ku
    >>> optimizer = ku.optimizers.Adam(learning_rate=0.5)
    >>> optimizer.get_config()["independent_weight_decay"]
    True
    """

    def __init__(self, learning_rate=1.0, *args, weight_decay=None,
                 independent_weight_decay=True, peak_learning_rate=None, **kwargs):
        super().__init__(learning_rate, *args, weight_decay=weight_decay, **kwargs)
        self._init_unit_scaling(learning_rate, independent_weight_decay, peak_learning_rate)


@keras.saving.register_keras_serializable(package="keras_unitscale")
class SGD(_UnitScaledOptimizer, keras.optimizers.SGD):
    __doc__ = """Keras' `SGD` with u-muP's per-weight learning rates (its SGD rules).
    """ + _COMMON_DOC.format(typical="1") + """
    Example:
    >>> import keras_unitscale as ku
    >>> optimizer = ku.optimizers.SGD(learning_rate=1.0, momentum=0.9)
    >>> optimizer.get_config()["momentum"]
    0.9
    """

    _rule = rules.SGD

    def __init__(self, learning_rate=1.0, *args, weight_decay=None,
                 independent_weight_decay=True, peak_learning_rate=None, **kwargs):
        super().__init__(learning_rate, *args, weight_decay=weight_decay, **kwargs)
        self._init_unit_scaling(learning_rate, independent_weight_decay, peak_learning_rate)
