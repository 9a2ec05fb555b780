"""`keras_unitscale.distribution`: meshes, the layout map against our layers' real variable
paths, and argument checks. One device here; several-device runs are in tests/distributed."""

import keras
import numpy as np
import pytest

import keras_unitscale as ku
from keras_unitscale import distribution as kd
from keras_unitscale.backend import num_replicas_in_sync
from keras_unitscale.models.backbones import LSTMBackbone, TransformerDecoderBackbone
from keras_unitscale.models.lm_head import LMHead
from keras_unitscale.models.seq2seq_backbone import Seq2SeqBackbone

ONE_DEVICE = keras.distribution.list_devices()[:1]


def axes(layouts, model):
    """`{path: axes}` of the variables the layout map shards (a lookup raises when a path
    matches several keys)."""
    out = {}
    for v in model.weights:
        layout = layouts[v.path]
        if layout is not None:
            out[v.path] = tuple(layout.axes)
    return out


@pytest.fixture(scope="module")
def mesh():
    return kd.device_mesh(1, ONE_DEVICE)


def test_decoder_backbone_matrices_are_split_megatron_style(mesh):
    backbone = TransformerDecoderBackbone(
        vocabulary_size=32, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=8, gated=True, normalization="rms_norm",
    )
    got = axes(kd.layout_map(mesh), backbone)
    expected = {"embeddings/token_embedding/embeddings": ("model", None)}
    for i in range(2):
        block = f"transformer_layer_{i}"
        for name in ("query", "key", "value"):
            expected[f"{block}/self_attention/{name}_kernel"] = (None, "model")
        expected[f"{block}/self_attention/attention_output_kernel"] = ("model", None)
        expected[f"{block}/mlp/up/kernel"] = (None, "model")
        expected[f"{block}/mlp/gate/kernel"] = (None, "model")
        expected[f"{block}/mlp/down/kernel"] = ("model", None)
    assert got == expected
    # The position table stays replicated.
    assert "embeddings/position_embedding/embeddings" in [v.path for v in backbone.weights]


def test_seq2seq_cross_attention_and_lm_head(mesh):
    backbone = Seq2SeqBackbone(40, 1, 2, 16, 32, max_sequence_length=8)
    got = axes(kd.layout_map(mesh), backbone)
    assert got["decoder_layer_0/cross_attention/key_kernel"] == (None, "model")
    assert got["decoder_layer_0/cross_attention/attention_output_kernel"] == ("model", None)
    assert got["encoder_embedding/token_embedding/embeddings"] == ("model", None)
    assert got["decoder_embedding/token_embedding/embeddings"] == ("model", None)
    assert len(got) == 3 * 4 + 2 * 2 + 2  # attention x3, MLP x2, two token tables
    head = LMHead(40, name="lm_head")
    head.build((None, 16))
    assert axes(kd.layout_map(mesh), head) == {"lm_head/kernel": (None, "model")}


def test_standalone_layers_biases_and_replicated_weights(mesh):
    inputs = keras.Input((6,), dtype="int32")
    x = ku.layers.Embedding(24, 16)(inputs)
    x = ku.layers.LSTM(16, return_sequences=True)(x)
    x = ku.layers.LayerNormalization()(x)
    x = ku.layers.MultiHeadAttention(2, 8)(x, x)
    x = ku.layers.MLP(32, use_bias=True)(x)
    x = ku.layers.Dense(16, name="up")(x)  # a Dense outside an MLP is left alone
    model = keras.Model(inputs, x)
    got = axes(kd.layout_map(mesh), model)
    expected = {
        "embedding/embeddings": ("model", None),
        "multi_head_attention/query_bias": ("model",),
        "multi_head_attention/key_bias": ("model",),
        "multi_head_attention/value_bias": ("model",),
        "mlp/up/kernel": (None, "model"),
        "mlp/up/bias": ("model",),
        "mlp/down/kernel": ("model", None),
    }
    for name in ("query", "key", "value"):
        expected[f"multi_head_attention/{name}_kernel"] = (None, "model")
    expected["multi_head_attention/attention_output_kernel"] = ("model", None)
    # Keras numbers repeated default names: match whatever number this session gave.
    got = {k.replace(k.split("/")[0], k.split("/")[0].rstrip("_0123456789"), 1): v
           for k, v in got.items()}
    assert got == expected


def test_lstm_backbone_is_replicated(mesh):
    backbone = LSTMBackbone(30, 8, embedding_dim=16)
    got = axes(kd.layout_map(mesh, shard_vocabulary=False), backbone)
    assert got == {}


def test_fully_sharded_and_vocabulary_options():
    mesh = kd.device_mesh(1, ONE_DEVICE, data_dim="data", model_dim="tp")
    layouts = kd.layout_map(mesh, model_dim="tp", data_dim="data")
    assert layouts["a/query_kernel"].axes == ("data", "tp")
    assert layouts["a/attention_output_kernel"].axes == ("tp", "data")
    assert layouts["b/mlp_3/gate/kernel"].axes == ("data", "tp")
    assert layouts["b/mlp/up/bias"].axes == ("tp",)
    assert layouts["token_embedding/embeddings"].axes == ("tp", "data")
    assert layouts["lm_head/kernel"].axes == ("data", "tp")
    plain = kd.layout_map(mesh, model_dim="tp", shard_vocabulary=False)
    assert plain["token_embedding/embeddings"] is None and plain["lm_head/kernel"] is None
    assert plain["position_embedding/embeddings"] is None


def test_shortcuts_build_keras_distributions():
    dist = kd.model_parallel(1, ONE_DEVICE, fully_sharded=True)
    assert isinstance(dist, keras.distribution.ModelParallel)
    assert dist.device_mesh.axis_names == ("batch", "model")
    layout = dist.get_variable_layout(_variable("blk/self_attention/query_kernel", (4, 4)))
    assert tuple(layout.axes) == ("batch", "model")
    dp = kd.data_parallel(ONE_DEVICE)
    assert isinstance(dp, keras.distribution.DataParallel)


def _variable(path, shape):
    class FakeVariable:  # what ModelParallel reads from a variable
        pass

    v = FakeVariable()
    v.path, v.shape, v._layout = path, shape, None
    return v


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: kd.device_mesh(0, ONE_DEVICE), "`model_parallelism` must be a positive"),
        (lambda: kd.device_mesh(2, ONE_DEVICE * 3), "must divide the number of devices"),
        (lambda: kd.device_mesh(1, ONE_DEVICE, "model", "model"), "must differ"),
        (lambda: kd.data_parallel([]), "at least one device"),
        (lambda: kd.layout_map(kd.device_mesh(1, ONE_DEVICE), model_dim="tp"),
         "`model_dim` must be an axis"),
        (lambda: kd.layout_map(kd.device_mesh(1, ONE_DEVICE), data_dim="model"),
         "`data_dim` must be None or another axis"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_one_replica_outside_a_strategy():
    assert num_replicas_in_sync() == 1
    # Scales of a plain run are untouched: the batch seen is the global batch.
    assert ku.ops.leading_size(np.zeros((4, 3, 2))) == 12
