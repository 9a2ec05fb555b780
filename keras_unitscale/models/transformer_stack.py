"""The one builder of a transformer stack, shared by the three transformer backbones.

A stack is a token + learned position embedding (their unit-scaled sum), its dropout,
`num_layers` pre-norm blocks whose residual taus follow u-muP's depth rule through
`(layer_index, num_layers)` (`keras_unitscale.ops.residual`), and a final norm without gain
(`keras_unitscale.layers.normalization.parameter_free_norm`).
`TransformerEncoderBackbone` and `TransformerDecoderBackbone` are one stack each;
`Seq2SeqBackbone` is two, an encoder stack and a decoder stack. The backbones keep the layers
as their own attributes (under the names their saved weights have) and run them.
"""

import collections

from keras_unitscale import layers
from keras_unitscale.layers._validation import positive_int
from keras_unitscale.layers.normalization import check_normalization, parameter_free_norm
from keras_unitscale.ops.dropout import validate_rate

FINAL_NORM_EPSILON = 1e-5

TransformerStack = collections.namedtuple(
    "TransformerStack", ["embedding", "embedding_dropout", "blocks", "norm"]
)
TransformerStack.__doc__ = """The layers of one stack, in the order they run."""


def check_transformer_arguments(
    vocabulary_size,
    num_layers,
    num_heads,
    hidden_dim,
    intermediate_dim,
    max_sequence_length,
    dropout,
    normalization,
):
    """The arguments every transformer backbone takes, checked (a ValueError names the bad
    one), returned in the order they are given."""
    vocabulary_size = positive_int(vocabulary_size, "vocabulary_size")
    num_layers = positive_int(num_layers, "num_layers")
    num_heads = positive_int(num_heads, "num_heads")
    hidden_dim = positive_int(hidden_dim, "hidden_dim")
    intermediate_dim = positive_int(intermediate_dim, "intermediate_dim")
    max_sequence_length = positive_int(max_sequence_length, "max_sequence_length")
    dropout = validate_rate(dropout, "dropout")
    if hidden_dim % num_heads:
        raise ValueError(
            f"`hidden_dim` ({hidden_dim}) must be divisible by `num_heads` ({num_heads})."
        )
    normalization = check_normalization(normalization)
    return (
        vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim,
        max_sequence_length, dropout, normalization,
    )


def transformer_stack(
    block_class,
    names,
    vocabulary_size,
    max_sequence_length,
    hidden_dim,
    num_layers,
    dropout,
    normalization,
    dtype,
    **block_arguments,
):
    """Builds one `TransformerStack`.

    Args:
        block_class: `TransformerEncoderBlock` or `TransformerDecoderBlock`.
        names: `(embedding, embedding_dropout, block_prefix, norm)`: the layers' names (block
            `i` is `f"{block_prefix}_{i}"`).
        vocabulary_size, max_sequence_length, hidden_dim: the embedding's table sizes.
        num_layers: blocks; block `i` gets `layer_index=i, num_layers=num_layers`.
        dropout, normalization, dtype: for every layer of the stack.
        **block_arguments: the blocks' other arguments (`num_heads`, `intermediate_dim`, ...).
    """
    embedding_name, dropout_name, block_prefix, norm_name = names
    embedding = layers.TokenAndPositionEmbedding(
        vocabulary_size, max_sequence_length, hidden_dim, dtype=dtype, name=embedding_name
    )
    embedding_dropout = layers.Dropout(dropout, dtype=dtype, name=dropout_name)
    blocks = [
        block_class(
            dropout=dropout,
            normalization=normalization,
            layer_index=i,
            num_layers=num_layers,
            dtype=dtype,
            name=f"{block_prefix}_{i}",
            **block_arguments,
        )
        for i in range(num_layers)
    ]
    norm = parameter_free_norm(normalization, FINAL_NORM_EPSILON, dtype, norm_name)
    return TransformerStack(embedding, embedding_dropout, blocks, norm)
