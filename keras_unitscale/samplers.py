"""The samplers `generate()` takes by name: `keras_hub.samplers` classes, imported on first use.

Below the models and the export (both decode with them); keras-hub, and with it TensorFlow,
is imported by the first sampler made, not by `import keras_unitscale`.
"""

SAMPLER_NAMES = {
    "greedy": "GreedySampler",
    "top_k": "TopKSampler",
    "top_p": "TopPSampler",
    "random": "RandomSampler",
}
"""The sampler names `generate()` takes, and their `keras_hub.samplers` classes."""


def _samplers():
    import keras_hub

    return keras_hub.samplers


def __getattr__(name):
    if name == "SAMPLERS":  # `{name: keras_hub sampler class}`, made on first use
        return {key: getattr(_samplers(), cls) for key, cls in SAMPLER_NAMES.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _sampler_error(sampler):
    return ValueError(
        f"`sampler` must be one of {sorted(SAMPLER_NAMES)} or a `keras_hub.samplers.Sampler`; "
        f"received {sampler!r}."
    )


def get_sampler(sampler):
    """A `keras_hub.samplers.Sampler` from a name in `SAMPLER_NAMES` or an instance.

    Example:
    >>> from keras_unitscale.samplers import get_sampler
    >>> type(get_sampler("top_k")).__name__
    'TopKSampler'
    """
    if isinstance(sampler, str):
        if sampler not in SAMPLER_NAMES:
            raise _sampler_error(sampler)
        return getattr(_samplers(), SAMPLER_NAMES[sampler])()
    if isinstance(sampler, _samplers().Sampler):
        return sampler
    raise _sampler_error(sampler)


def check_sampler(sampler):
    """`sampler` itself when `get_sampler` takes it (a name is checked without importing
    keras-hub); raises its `ValueError` otherwise.

    Example:
    >>> check_sampler("greedy")
    'greedy'
    """
    if isinstance(sampler, str):
        if sampler not in SAMPLER_NAMES:
            raise _sampler_error(sampler)
        return sampler
    return get_sampler(sampler)
