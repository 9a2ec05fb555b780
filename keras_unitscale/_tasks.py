"""`registered_tasks()`: the task classes, found by what they declare, not by a list of names.

A task class declares what it is (`backbone_cls`, `preprocessor_cls`, its text inputs and
serving outputs, ...; see `keras_unitscale.models.Task`). Presets, export and the CLI loop over
the classes this returns, so a new task is listed once it is registered with Keras. This
module imports nothing from the package, so every floor can use it.
"""

import keras


def registered_tasks():
    """`{name: class}` of the task classes registered with Keras under `keras_unitscale>`
    that declare their `preprocessor_cls`, in the order they were registered.

    Example:
    >>> import keras_unitscale
    >>> list(registered_tasks())
    ['TextClassifier', 'CausalLM', 'Seq2SeqLM']
    """
    return {
        cls.__name__: cls for key, cls in keras.saving.get_custom_objects().items()
        if key.startswith("keras_unitscale>") and isinstance(cls, type)
        and "preprocessor_cls" in vars(cls)
    }

