"""Loads exports with TensorFlow alone and answers TF Serving-style requests; run as a script.

    python -I load_without_keras.py JOBS.json RESULTS.json

JOBS is a list of `{"directory": ..., "payloads": [REST bodies]}`. Importing keras, KerasHub,
keras_unitscale, JAX or jieba raises here, as on a TF Serving host; TF Text's kernels come
from its op libraries, as a model server links them. For each export this loads it with
`tf.saved_model.load`, answers each payload as TF Serving's REST API would (the rows of
`"instances"` or the columns of `"inputs"` as one signature call), prints it with
`saved_model_cli show --all`, and sorts its graph's op types (the function libraries
included). RESULTS gets one entry per job: `outputs` (one dict of lists per payload), `cli`
(the printout), `ops`, `unregistered` (ops neither TensorFlow nor TF Text registers),
`outside_core_and_tf_text` (the same, counted against what TensorFlow alone registers),
`not_in_raw_ops` (registered by TensorFlow but not in `tf.raw_ops`: XLA's ops), `tf_text_ops`
and `imported` (blocked modules found in `sys.modules`).
"""

import contextlib
import glob
import importlib.abc
import importlib.machinery
import importlib.util
import io
import json
import os
import runpy
import sys

BLOCKED = ("keras", "keras_hub", "keras_unitscale", "jax", "jaxlib", "jieba", "tf_keras")


class _Refused(importlib.abc.Loader):
    def create_module(self, spec):
        raise ImportError(f"{spec.name} is blocked: an export must load with TensorFlow only")

    def exec_module(self, module):  # never reached
        raise ImportError(module.__name__)


class _Blocker(importlib.abc.MetaPathFinder):
    # A spec without an origin: `find_spec` probes (TensorFlow makes some) see no package,
    # and importing it raises.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return importlib.machinery.ModuleSpec(name, _Refused())
        return None


sys.meta_path.insert(0, _Blocker())

import tensorflow as tf  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402
from tensorflow.python.framework import op_def_registry  # noqa: E402

RAW_OPS = frozenset(dir(tf.raw_ops))


def graph_op_types(directory):
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(directory, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    types, functions = set(), set()
    for meta_graph in proto.meta_graphs:
        types.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            functions.add(function.signature.name)
            types.update(node.op for node in function.node_def)
    return sorted(types - functions)


def load_tf_text_ops():
    """Registers TF Text's ops from its op libraries, as a TF Serving build links them in.

    Not `import tensorflow_text`: its Python package builds Keras layers on import.
    """
    package = importlib.util.find_spec("tensorflow_text").submodule_search_locations[0]
    for library in sorted(glob.glob(os.path.join(package, "python", "*", "_*.so"))):
        tf.load_op_library(library)


def registered(types):
    return {op for op in types if op_def_registry.get(op) is not None}


def call(loaded, payload):
    signature = loaded.signatures[payload["signature_name"]]
    if "instances" in payload:
        rows = payload["instances"]
        columns = {name: [row[name] for row in rows] for name in rows[0]}
    else:
        columns = payload["inputs"]
    _, specs = signature.structured_input_signature
    arguments = {name: tf.constant(value, dtype=specs[name].dtype)
                 for name, value in columns.items()}
    outputs = signature(**arguments)
    results = {}
    for name, value in outputs.items():
        value = value.numpy()
        if value.dtype == object:
            value = [text.decode("utf-8") for text in value.tolist()]
        else:
            value = value.tolist()
        results[name] = value
    return results


def _run_saved_model_cli(*arguments):
    from absl import flags

    # Its flags are module state: one left from the previous run would stay set.
    flags.FLAGS.unparse_flags()
    script = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    argv, sys.argv = sys.argv, ["saved_model_cli", *arguments]
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exit:
        if exit.code not in (None, 0):
            raise
    finally:
        sys.argv = argv
    return printed.getvalue()


def saved_model_cli(directory, signatures):
    """`saved_model_cli show` of the serving tag-set's keys, then of each signature.

    (`show --all` also reloads the whole model to list its concrete functions, which takes as
    long as the load above and prints nothing a model server reads.)
    """
    printouts = [_run_saved_model_cli("show", "--dir", directory, "--tag_set", "serve")]
    for signature in signatures:
        printouts.append(_run_saved_model_cli(
            "show", "--dir", directory, "--tag_set", "serve", "--signature_def", signature))
    return "\n".join(printouts)


def main(jobs_path, results_path):
    with open(jobs_path, encoding="utf-8") as f:
        jobs = json.load(f)
    all_types = sorted({op for job in jobs for op in graph_op_types(job["directory"])})
    core_registered = registered(all_types)
    load_tf_text_ops()

    tf_text_ops = registered(all_types) - core_registered
    results = []
    for job in jobs:
        types = graph_op_types(job["directory"])
        loaded = tf.saved_model.load(job["directory"])
        results.append({
            "outputs": [call(loaded, payload) for payload in job["payloads"]],
            "cli": saved_model_cli(job["directory"], sorted(loaded.signatures)),
            "ops": types,
            "unregistered": sorted(set(types) - registered(types)),
            "outside_core_and_tf_text": sorted(set(types) - core_registered - tf_text_ops),
            "not_in_raw_ops": sorted(set(types) - RAW_OPS - tf_text_ops),
            "tf_text_ops": sorted(set(types) & tf_text_ops),
        })
    imported = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
    for result in results:
        result["imported"] = imported
    with open(results_path, "w", encoding="utf-8") as f:
        json.dump(results, f, ensure_ascii=False)


if __name__ == "__main__":
    main(*sys.argv[1:])
