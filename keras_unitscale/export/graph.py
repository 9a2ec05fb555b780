"""Preprocessing inside the exported graph: lookup tables and TensorFlow ops, no Python.

TF Serving runs a graph with TensorFlow's own kernels (and TF Text's, where they are linked
in); a `tf.numpy_function` (a `PyFunc` op) cannot run there. Every tokenizer here has an
all-TensorFlow path: jieba's segmentation runs in core TensorFlow ops
(`keras_unitscale.tokenizers.jieba_graph`), so an export takes raw text.
"""

import os

import keras
import tensorflow as tf

PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})


def build_resources(tokenizers):
    """Makes the lookup tables that the `tokenizers` build on first use in a graph (jieba's
    in-graph segmenter), so that `tf_trackables` finds them and an export saves them.

    Example:
    >>> from keras_unitscale.tokenizers import JiebaTokenizer
    >>> tokenizer = JiebaTokenizer.from_corpus(["我喜欢猫"])
    >>> build_resources([tokenizer])
    >>> sorted(type(t).__name__ for t in tf_trackables(tokenizer))
    ['JiebaGraphSegmenter', 'StaticHashTable']
    """
    for tokenizer in tokenizers:
        if hasattr(tokenizer, "graph_segmenter") and not tokenizer.presegmented:
            tokenizer.graph_segmenter()


def tf_trackables(layer):
    """The TensorFlow objects (lookup tables, TF Text tokenizers) held by `layer` and the
    layers inside it, which an export must track so that their resources are saved.

    Example:
    >>> from keras_unitscale.tokenizers import CharacterTokenizer
    >>> [type(t).__name__ for t in tf_trackables(CharacterTokenizer.from_corpus(["ab"]))]
    ['StaticHashTable']
    """
    found, seen = [], set()

    def visit(value):
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, keras.layers.Layer):
            for child in vars(value).values():
                visit(child)
        elif isinstance(value, (tf.Variable, keras.Variable, tf.Tensor)):
            return
        elif isinstance(value, tf.__internal__.tracking.Trackable):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            for child in value:
                visit(child)
        elif isinstance(value, dict):
            for child in value.values():
                visit(child)

    visit(layer)
    return found


def _graph_def_op_types(graph_def):
    types = {node.op for node in graph_def.node}
    for library_function in graph_def.library.function:
        types.update(node.op for node in library_function.node_def)
    return types


def op_types(function):
    """Every op type in a concrete function's graph, its function library included.

    Example:
    >>> square = tf.function(lambda x: x * x).get_concrete_function(tf.TensorSpec([2]))
    >>> sorted(op_types(square))
    ['Identity', 'Mul', 'Placeholder']
    """
    return _graph_def_op_types(function.graph.as_graph_def())


def saved_op_types(directory):
    """Every op type in a SavedModel's graphs, their function libraries included.

    Example:
    >>> import tempfile
    >>> module = tf.Module()
    >>> module.square = tf.function(lambda x: x * x, input_signature=[tf.TensorSpec([2])])
    >>> directory = tempfile.mkdtemp()
    >>> tf.saved_model.save(module, directory)
    >>> "Mul" in saved_op_types(directory)
    True
    """
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(directory, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    types = set()
    for meta_graph in saved_model.meta_graphs:
        types |= _graph_def_op_types(meta_graph.graph_def)
    return types


def check_no_python(types, what):
    """Raises `ValueError` if the op `types` of the `what` graph call back into Python.

    Example:
    >>> check_no_python({"MatMul", "PyFunc"}, "serving_default")
    Traceback (most recent call last):
    ...
    ValueError: The serving_default graph calls Python (PyFunc ops: ...
    """
    python = sorted(set(types) & PYTHON_OPS)
    if python:
        raise ValueError(
            f"The {what} graph calls Python ({', '.join(python)} ops: a `tf.numpy_function` "
            "in the preprocessor or tokenizer), which TF Serving cannot run. Use a tokenizer "
            "with an in-graph path (character, jieba, WordPiece, SentencePiece), or set "
            "`task.preprocessor = None` and tokenize on the client."
        )
