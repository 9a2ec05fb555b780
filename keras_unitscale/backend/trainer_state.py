"""Keeping a model usable when `fit`, `evaluate` or `predict` fails part-way on JAX.

Keras' JAX trainer detaches the values of a model's variables while one of those loops runs
(the loop passes the state through its compiled step instead) and reattaches them when the
loop ends; `fit` reattaches them on failure too, `evaluate` and `predict` do not, and a
failure before the first step ends leaves nothing to reattach. A bad batch from the data
pipeline (the checks of `models.task_inputs`) would then leave a model whose every variable
is empty ("'NoneType' object is not callable" on its next use).
"""

import contextlib

from keras_unitscale.backend._common import backend_name


def _variables(model):
    found = list(model.variables)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        found += list(optimizer.variables)
    found += list(getattr(model, "metrics_variables", []))
    return found


@contextlib.contextmanager
def variables_kept_on_failure(model):
    """Runs the block; if it raises on JAX, the variables get back the values of the last
    step that completed, or, before any step, the values they had (JAX arrays are immutable,
    so holding them costs no copy). Nothing is done on the other backends."""
    if backend_name() != "jax":
        yield
        return
    saved = [(variable, getattr(variable, "_value", None)) for variable in _variables(model)]
    try:
        yield
    except BaseException:
        if getattr(model, "_jax_state", None):
            model.jax_state_sync()
        model._jax_state = None
        for variable, value in saved:
            if getattr(variable, "_value", 0) is None and value is not None:
                variable._value = value
        raise
