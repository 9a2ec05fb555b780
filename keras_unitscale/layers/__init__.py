"""Unit-scaled Keras layers: thin wrappers over `keras_unitscale.ops`."""

from keras_unitscale.layers.activation import Activation
from keras_unitscale.layers.dense import Dense
from keras_unitscale.layers.dropout import Dropout
from keras_unitscale.layers.embedding import Embedding
from keras_unitscale.layers.mlp import MLP
from keras_unitscale.layers.normalization import LayerNormalization, RMSNormalization
from keras_unitscale.layers.residual import Residual, ResidualAdd, ResidualSplit
from keras_unitscale.layers.attention import MultiHeadAttention
from keras_unitscale.layers.position import (
    PositionEmbedding,
    RotaryEmbedding,
    SinePositionEncoding,
    TokenAndPositionEmbedding,
)
from keras_unitscale.layers.transformer import TransformerDecoderBlock, TransformerEncoderBlock
from keras_unitscale.layers.lstm import LSTM
from keras_unitscale.layers.gru import GRU
from keras_unitscale.layers.heads import LMHead, OutputMultiplier, SequencePooling
