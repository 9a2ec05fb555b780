"""Test configuration: the suite runs once per backend (KERAS_BACKEND=tensorflow, then jax)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

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
