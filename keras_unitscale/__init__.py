"""keras-unitscale: unit-scaled Keras 3 layers, ops and models.

Unit scaling puts a fixed scale on every op, separately in the forward and the backward pass,
so that at initialisation every activation, gradient and weight has a standard deviation near
one. Such models train in FP16 without loss scaling and in FP8 by plain casting.

Public API:
- `keras_unitscale.ops`: the functional core (`scale_fwd`, `scale_bwd`, `linear`, ...).
- `keras_unitscale.layers`: drop-in replacements for Keras layers.
- `keras_unitscale.losses`: unit-scaled losses whose values equal Keras' own.
- `keras_unitscale.models`: `UnitScaledModel`, backbones and task models.
- `keras_unitscale.analysis`: scale tracking (`track_scales`, `plot_scales`, `ScaleTracker`).
- `keras_unitscale.unit_scale(model)`: converts a functional or Sequential Keras model.
- `keras_unitscale.precision`: the FP8 simulation switch (`simulate_fp8`, `disable_fp8`).
- `keras_unitscale.tokenizers`, `.preprocessors`, `.datasets`: the text path (jieba and
  KerasHub tokenizers, task preprocessors, corpora from installed packages); loaded on first
  use, since they import keras-hub and TensorFlow.
- `keras_unitscale.export`, `.serving`: task models as SavedModels for TF Serving
  (`task.export(path)`), and the REST and gRPC requests for them; loaded on first use.
"""

from keras_unitscale._version import __version__  # noqa: E402,F401

from keras_unitscale import _quiet  # noqa: E402

if _quiet.is_quiet_command():  # the `keras-unitscale` command: before Keras imports TensorFlow
    _quiet.quiet_libraries()
    _quiet.filter_library_logs()

from keras_unitscale import ops  # noqa: E402
from keras_unitscale import layers  # noqa: E402
from keras_unitscale import losses  # noqa: E402
from keras_unitscale import models  # noqa: E402
from keras_unitscale import analysis  # noqa: E402
from keras_unitscale import precision  # noqa: E402
from keras_unitscale import optimizers  # noqa: E402
from keras_unitscale.presets import list_presets  # noqa: E402
from keras_unitscale.convert import ConversionReport, unit_scale  # noqa: E402

_LAZY = ("tokenizers", "preprocessors", "datasets", "export", "serving")


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"keras_unitscale.{name}")
    raise AttributeError(f"module 'keras_unitscale' has no attribute {name!r}")
