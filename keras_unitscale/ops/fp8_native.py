"""Native FP8 matmuls: operands in `float8_e4m3fn`, output gradients in `float8_e5m2`.

`FP8Native` is what `keras_unitscale.precision.enable_fp8(model, mode="native")` puts in a
layer's `fp8` attribute. Where FP8 matrix hardware is present (JAX on an NVIDIA GPU of compute
capability 8.9 or more: Ada, Hopper, Blackwell), `keras_unitscale.ops.linear`, `readout` and
`matmul` hand their products to it, and it computes them as

- forward: `y = out_scale * dot(e4m3(x), e4m3(w))`, the dot taking real FP8 operands and
  accumulating in float32 (`preferred_element_type=float32`), the result cast to the compute
  dtype (bfloat16 under `mixed_bfloat16`);
- backward: `dx = grad_in_scale * dot(e5m2(g), e4m3(w).T)` and
  `dw = grad_w_scale * dot(e4m3(x).T, e5m2(g))`, FP8 again (E5M2 x E4M3, as cuBLASLt allows),
  accumulated in float32, returned in the dtypes of `x` and `w`.

There is no per-tensor scale factor and no amax history: unit scaling keeps every operand near
unit scale, inside E4M3's range. Casts saturate (values past the format's largest finite value
become that value, as `FP8Simulation(overflow="saturate")` does) unless `overflow="inf_nan"`.
The unit-scaling factors multiply the float32 accumulator, never an FP8 operand. On an H100 or
H200 XLA rewrites such dots into cuBLASLt FP8 GEMMs (`__cublas$lt$matmul$f8` custom calls in
the optimized HLO); `fp8_hlo_report` checks that.

Where there is no FP8 hardware (a CPU, an older GPU, or the TensorFlow backend),
`FP8Native` computes the same numbers with the simulation it inherits from `FP8Simulation`
(E4M3 operands, E5M2 gradients, round to nearest), after one warning. `enable_fp8(...,
mode="native")` refuses such a machine outright; the fall-back is for a model that was saved
with native FP8 and is loaded elsewhere (to evaluate, serve or export it): it must load, and
the simulation gives the trained model's arithmetic to within float32 rounding.

`fp8_hardware()` is the one place that decides. Tests run the native arithmetic on a CPU (XLA
emulates FP8 dots there) inside `_emulate_fp8_hardware()`, a private override.
"""

import contextlib
import functools
import warnings

import keras

from keras_unitscale.ops.casts import OVERFLOWS, _check_choice, get_format
from keras_unitscale.ops.formats import FP8Simulation

_EMULATE = [False]
_WARNED = set()
MIN_COMPUTE_CAPABILITY = (8, 9)


@contextlib.contextmanager
def _emulate_fp8_hardware():
    """Private, for tests: treat this machine as having FP8 hardware, so native FP8 arithmetic
    runs (emulated by XLA:CPU) and `enable_fp8(mode="native")` is allowed. JAX only."""
    _EMULATE.append(True)
    try:
        yield
    finally:
        _EMULATE.pop()


def _device_description():
    backend = keras.backend.backend()
    if backend != "jax":
        return f"the {backend!r} backend"
    import jax

    device = jax.devices()[0]
    kind = getattr(device, "device_kind", device.platform)
    capability = getattr(device, "compute_capability", None)
    text = f"JAX device {device.platform}:{device.id} ({kind}"
    if capability is not None:
        text += f", compute capability {capability}"
    return text + ")"


def _capability(device):
    capability = getattr(device, "compute_capability", None)
    if capability is None:
        return None
    try:
        return tuple(int(p) for p in str(capability).split(".")[:2])
    except ValueError:
        return None


def fp8_hardware():
    """Whether native FP8 matmuls can run here, and a description of the device.

    True on the JAX backend when the first device is an NVIDIA GPU of compute capability 8.9
    or more (Ada, Hopper and later: what cuBLASLt's FP8 GEMMs need). False on a CPU, an older
    GPU, a TPU, and on the TensorFlow backend (native FP8 here is JAX's FP8 dot).

    Returns:
        `(available, description)`.

    Example:
    >>> from keras_unitscale.ops.fp8_native import fp8_hardware
    >>> available, description = fp8_hardware()
    >>> isinstance(available, bool) and isinstance(description, str)
    True
    """
    description = _device_description()
    if _EMULATE[-1]:
        if keras.backend.backend() != "jax":
            return False, description + " (the FP8 emulation override needs JAX)"
        return True, description + " (FP8 emulated: test override)"
    if keras.backend.backend() != "jax":
        return False, description
    import jax

    device = jax.devices()[0]
    capability = _capability(device)
    ok = device.platform == "gpu" and capability is not None and (
        capability >= MIN_COMPUTE_CAPABILITY
    )
    return bool(ok), description


def require_fp8_hardware():
    """Raises RuntimeError naming the device when `fp8_hardware()` says no."""
    ok, description = fp8_hardware()
    if not ok:
        raise RuntimeError(
            f"Native FP8 needs FP8 matrix hardware under JAX (an NVIDIA GPU of compute "
            f"capability >= 8.9: Ada, Hopper or later); this session runs on {description}. "
            'Use mode="simulate" here (the same E4M3/E5M2 casts, computed in float32).'
        )


# The arithmetic (JAX) ----------------------------------------------------------------------


def _f8(t, fmt, saturate):
    import jax.numpy as jnp

    f = get_format(fmt)
    if saturate:
        t = jnp.clip(t, -f.max_value, f.max_value)
    return t.astype(f.numpy_dtype())


def _dot(a, b, contracting, batch=((), ())):
    import jax
    import jax.numpy as jnp

    return jax.lax.dot_general(
        a, b, (contracting, batch), preferred_element_type=jnp.float32
    )


def _tag(dtype):
    # A zero-size array carries a dtype through custom_vjp residuals.
    import jax.numpy as jnp

    return jnp.zeros((0,), dtype)


@functools.lru_cache(maxsize=None)
def _scaled_op(saturate):
    import jax
    import jax.numpy as jnp

    def fwd(x, w, s_out, s_in, s_w):
        out_dtype = jnp.result_type(x.dtype, w.dtype)
        x8, w8 = _f8(x, "e4m3", saturate), _f8(w, "e4m3", saturate)
        y = _dot(x8, w8, ((x.ndim - 1,), (0,))) * s_out
        return y.astype(out_dtype), (x8, w8, s_in, s_w, _tag(x.dtype), _tag(w.dtype))

    def bwd(res, g):
        x8, w8, s_in, s_w, x_tag, w_tag = res
        g8 = _f8(g, "e5m2", saturate)
        dx = _dot(g8, w8, ((g.ndim - 1,), (1,))) * s_in
        x2 = x8.reshape((-1, x8.shape[-1]))
        g2 = g8.reshape((-1, g8.shape[-1]))
        dw = _dot(x2, g2, ((0,), (0,))) * s_w
        zero = jnp.zeros((), jnp.float32)
        return dx.astype(x_tag.dtype), dw.astype(w_tag.dtype), zero, zero, zero

    op = jax.custom_vjp(lambda x, w, s_out, s_in, s_w: fwd(x, w, s_out, s_in, s_w)[0])
    op.defvjp(fwd, bwd)
    return op


def _unbroadcast(grad, shape):
    import jax.numpy as jnp

    extra = grad.ndim - len(shape)
    if extra:
        grad = jnp.sum(grad, axis=tuple(range(extra)))
    axes = tuple(i for i, (g, s) in enumerate(zip(grad.shape, shape)) if s == 1 and g != 1)
    if axes:
        grad = jnp.sum(grad, axis=axes, keepdims=True)
    return grad


def _batched(a, b, contract_a, contract_b):
    """`dot_general` over broadcast batch axes (all but the last two)."""
    import jax.numpy as jnp

    batch = jnp.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = jnp.broadcast_to(a, batch + a.shape[-2:])
    b = jnp.broadcast_to(b, batch + b.shape[-2:])
    axes = tuple(range(len(batch)))
    n = len(batch)
    return _dot(a, b, ((n + contract_a,), (n + contract_b,)), (axes, axes))


@functools.lru_cache(maxsize=None)
def _matmul_op(saturate):
    import jax
    import jax.numpy as jnp

    def fwd(a, b):
        out_dtype = jnp.result_type(a.dtype, b.dtype)
        a8, b8 = _f8(a, "e4m3", saturate), _f8(b, "e4m3", saturate)
        y = _batched(a8, b8, 1, 0)  # [..., m, k] x [..., k, n]
        return y.astype(out_dtype), (a8, b8, _tag(a.dtype), _tag(b.dtype))

    def bwd(res, g):
        a8, b8, a_tag, b_tag = res
        g8 = _f8(g, "e5m2", saturate)
        da = _batched(g8, b8, 1, 1)  # g [..., m, n] x b [..., k, n] -> [..., m, k]
        db = _batched(a8, g8, 0, 0)  # a [..., m, k] x g [..., m, n] -> [..., k, n]
        da = _unbroadcast(da, a8.shape).astype(a_tag.dtype)
        db = _unbroadcast(db, b8.shape).astype(b_tag.dtype)
        return da, db

    op = jax.custom_vjp(lambda a, b: fwd(a, b)[0])
    op.defvjp(fwd, bwd)
    return op


def _jax_array(t):
    import jax.numpy as jnp

    if isinstance(t, keras.Variable):
        t = t.value
    return jnp.asarray(t)


def native_scaled_matmul(x, w, out_scale, grad_in_scale, grad_w_scale, overflow="saturate"):
    """`out_scale * (x @ w)` in native FP8, with the FP8 backward described in the module
    docstring (JAX only; runs on any JAX device, emulated where there is no FP8 hardware).

    Example:
    >>> import numpy as np
    >>> import keras
    >>> from keras_unitscale.ops.fp8_native import native_scaled_matmul
    >>> if keras.backend.backend() == "jax":
    ...     y = native_scaled_matmul(np.full((2, 4), 1.1, "float32"), np.ones((4, 3), "float32"),
    ...                              0.5, 1.0, 1.0)
    ...     print(np.asarray(y)[0].tolist())  # 1.1 -> 1.125 in E4M3; 4 * 1.125 * 0.5
    ... else:
    ...     print([2.25, 2.25, 2.25])
    [2.25, 2.25, 2.25]
    """
    import jax.numpy as jnp

    _check_choice(overflow, "overflow", OVERFLOWS)
    scales = [jnp.asarray(s, jnp.float32) for s in (out_scale, grad_in_scale, grad_w_scale)]
    return _scaled_op(overflow == "saturate")(_jax_array(x), _jax_array(w), *scales)


def native_matmul(a, b, overflow="saturate"):
    """`a @ b` (`[..., m, k] x [..., k, n]`) in native FP8, FP8 backward (JAX only)."""
    _check_choice(overflow, "overflow", OVERFLOWS)
    return _matmul_op(overflow == "saturate")(_jax_array(a), _jax_array(b))


@keras.saving.register_keras_serializable(package="keras_unitscale")
class FP8Native(FP8Simulation):
    """A layer's `fp8` setting for native FP8 matmuls (E4M3 operands, E5M2 gradients).

    Use `keras_unitscale.precision.enable_fp8(model, mode="native")` to switch a model.
    `ops.linear`, `readout` and `matmul` call `matmul` / `scaled_matmul` when `runs_native()`
    (FP8 hardware, see `fp8_hardware`); otherwise the inherited simulation casts apply (the
    same formats, round to nearest), after one warning.

    Args:
        overflow: `"saturate"` (default) or `"inf_nan"`, as in `cast_to_format`.
        keep_matmuls: matmuls inside the layer to leave in the compute dtype, by role
            (`"attention_output"`: the attention output projection).

    Example:
    >>> from keras_unitscale.ops.fp8_native import FP8Native
    >>> FP8Native().get_config()
    {'overflow': 'saturate', 'keep_matmuls': ()}
    """

    def __init__(self, overflow="saturate", keep_matmuls=()):
        super().__init__(
            forward_format="e4m3", gradient_format="e5m2", rounding="nearest",
            overflow=overflow, keep_matmuls=keep_matmuls,
        )

    def runs_native(self):
        """True where the native FP8 path runs (checked when a step is traced)."""
        ok, description = fp8_hardware()
        if not ok and description not in _WARNED:
            _WARNED.add(description)
            warnings.warn(
                f"This model's matmuls are set to native FP8, but {description} has no FP8 "
                "matrix hardware: they run as the FP8 simulation (the same E4M3/E5M2 casts in "
                "the compute dtype), which matches native FP8 to within float32 rounding.",
                stacklevel=3,
            )
        return ok

    def scaled_matmul(self, x, w, out_scale, grad_in_scale, grad_w_scale):
        return native_scaled_matmul(x, w, out_scale, grad_in_scale, grad_w_scale, self.overflow)

    def matmul(self, a, b):
        return native_matmul(a, b, self.overflow)

    def get_config(self):
        return {"overflow": self.overflow, "keep_matmuls": tuple(self.keep_matmuls)}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"FP8Native({args})"

    def __eq__(self, other):
        return isinstance(other, FP8Native) and self.get_config() == other.get_config()

    __hash__ = None


# The HLO check -----------------------------------------------------------------------------

FP8_GEMM_TARGET = "__cublas$lt$matmul$f8"


def fp8_hlo_report(fn, *args, optimized=True):
    """Lowers `jax.jit(fn)(*args)` and counts its dots and FP8 GEMMs.

    Returns a dict: `f8_dots` (dots with FP8 operands in the lowered, unoptimised module),
    `dots` (all dots there), and with `optimized=True` (which compiles for the current device)
    `fp8_gemms` (`__cublas$lt$matmul$f8` custom calls in the optimized HLO: the cuBLASLt FP8
    GEMMs XLA uses on Hopper) and `gemms` (all `__cublas...` matmul custom calls).

    Example:
    >>> import numpy as np
    >>> import keras
    >>> from keras_unitscale.ops.fp8_native import fp8_hlo_report, native_matmul
    >>> if keras.backend.backend() == "jax":
    ...     report = fp8_hlo_report(native_matmul, np.ones((4, 8), "float32"),
    ...                             np.ones((8, 4), "float32"), optimized=False)
    ...     print(report["f8_dots"], report["dots"])
    ... else:
    ...     print(1, 1)
    1 1
    """
    import re

    import jax

    if keras.backend.backend() != "jax":
        raise RuntimeError("`fp8_hlo_report` lowers a JAX function; set KERAS_BACKEND=jax.")
    lowered = jax.jit(fn).lower(*args)
    text = lowered.as_text()
    dots = re.findall(r"stablehlo\.dot_general[^\n]*", text)
    f8 = [d for d in dots if re.search(r":\s*\(tensor<[^>]*xf8E", d)]
    report = {"dots": len(dots), "f8_dots": len(f8)}
    if optimized:
        hlo = lowered.compile().as_text()
        report["fp8_gemms"] = hlo.count(f'custom_call_target="{FP8_GEMM_TARGET}"')
        report["gemms"] = len(re.findall(r'custom_call_target="__cublas\$[^"]*matmul', hlo))
    return report
