"""keras_unitscale.export: task models as SavedModels that TF Serving serves.

`export_task(task, path, version=1)` (also `task.export(path, version=1)`) writes TF
Serving's layout, `path/<version>/saved_model.pb` with `variables/`, from the TensorFlow or
the JAX backend. `serving_spec(task)` describes its signatures (see
`keras_unitscale.export.spec`); `keras_unitscale.serving` builds requests for them, and
`docs/serving.md` shows how to serve one.
"""

from keras_unitscale.export.exporter import export_task
from keras_unitscale.export.spec import serving_spec

__all__ = ["export_task", "serving_spec"]
