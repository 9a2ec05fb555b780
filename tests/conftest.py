"""Test configuration: the suite runs once per backend (KERAS_BACKEND=tensorflow, then jax)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Most of the suite's time on JAX is XLA compiling hundreds of small programs (every eager op
# on a new shape is one). Two flags make each compile cheaper; the same HLO runs, at most the
# last bits of a rounding can differ (fused multiply-adds), which every tolerance here allows:
# - LLVM's optimisation level 0 (tests/models/test_text_classifier.py and
#   test_padding_invariance.py, one process: 215 s -> 165 s of CPU time);
# - XLA:CPU's older loop emitters instead of its MLIR fusion emitters, whose fixed cost per
#   compile dominates programs this small (tests/ops/test_attention.py and
#   tests/layers/test_transformer.py on JAX, one process: 95 s -> 54 s of CPU time; 60 small
#   eager programs: 21 s -> 11.5 s).
# TensorFlow reads XLA_FLAGS too (its XLA-compiled tests pass with them); its other tests took
# the same time either way. Child processes inherit them. Benchmarks do not set them.
_FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")
_flags = os.environ.get("XLA_FLAGS", "")
for _flag in _FAST_COMPILE:
    if _flag.split("=")[0] not in _flags:
        _flags = f"{_flags} {_flag}".strip()
os.environ["XLA_FLAGS"] = _flags

import keras  # noqa: E402
import pytest  # noqa: E402


def _pin_full_matmul_precision():
    """Exactness checks compare two orderings of the same float32 math at `rtol=1e-5`. On
    Ampere and Hopper GPUs float32 matmuls run as TF32 (a 10-bit mantissa) unless the precision
    is pinned, which moves such results by about 1e-3: pin full precision for the whole suite
    rather than loosen tolerances. CPUs compute in full precision either way."""
    if keras.backend.backend() == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)


_pin_full_matmul_precision()


def pytest_report_header(config):
    return f"keras backend: {keras.backend.backend()} (keras {keras.__version__})"


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts from the default dtype policy and a fixed global seed."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "backend_independent: the test's outcome cannot depend on KERAS_BACKEND (it runs its "
        "own child process with a fixed backend, say); it runs in the JAX pass of `make test` "
        "only, not once per backend",
    )


def pytest_collection_modifyitems(config, items):
    if keras.backend.backend() == "jax":
        return
    once = [item for item in items if item.get_closest_marker("backend_independent")]
    if once:
        config.hook.pytest_deselected(items=once)
        items[:] = [item for item in items if not item.get_closest_marker("backend_independent")]
        config._backend_independent_deselected = len(once)


def pytest_report_collectionfinish(config, start_path, items):
    count = getattr(config, "_backend_independent_deselected", 0)
    if count:
        return f"{count} backend-independent tests deselected: they run in the JAX pass"
