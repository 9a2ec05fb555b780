"""Keras constructor arguments that unit scaling cannot honour.

Each is accepted at Keras' neutral value (what `get_config` of a plain Keras layer writes,
so that `unit_scale(model)` can pass a layer's whole config) and refused otherwise, with a
`ValueError` that names the argument and says why.
"""

LORA = (
    "unit-scaled layers have no LoRA adapters: the low-rank update `(alpha / rank) a @ b` "
    "added to the kernel would need a scale and a u-muP learning-rate rule of its own, which "
    "are not derived here. Fine-tune the whole layer (u-muP's rates are set per weight)."
)
QUANTIZATION_CONFIG = (
    "a unit-scaled layer is quantised after training, with `layer.quantize('int8' or "
    "'int4', config=...)` or `model.quantize(...)` (Keras' GPTQ/AWQ/custom quantisers are "
    "not supported: the kernels use Keras' default abs-max quantiser), and a quantised layer "
    "loaded from a file takes its settings from its dtype policy."
)

# Keras' neutral values, by argument.
NEUTRAL = {
    "lora_rank": (None, 0),
    "lora_alpha": (None,),
    "quantization_config": (None,),
    "use_gate": (False,),
}


def _is_neutral(value, neutral):
    return any(value is n or (type(value) is type(n) and value == n) for n in neutral)


def refuse(kwargs, layer, reasons):
    """Pops each argument of `reasons` (`{name: why}`) from `kwargs`; raises a `ValueError`
    naming it and saying why when its value is not Keras' neutral one (`NEUTRAL`)."""
    for name, why in reasons.items():
        if name not in kwargs:
            continue
        value = kwargs.pop(name)
        if not _is_neutral(value, NEUTRAL[name]):
            raise ValueError(
                f"{layer} does not take `{name}={value!r:.60}` (only the default "
                f"{NEUTRAL[name][0]!r}): {why}"
            )
