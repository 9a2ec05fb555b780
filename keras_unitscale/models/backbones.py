"""The backbones, in one place: `Backbone` (the base), `TransformerEncoderBackbone`,
`TransformerDecoderBackbone` and `LSTMBackbone`.

Each is a functional `UnitScaledModel` built from its constructor arguments (KerasHub's
pattern): `get_config()` returns the arguments and `from_config()` rebuilds it. Text backbones
take `{"token_ids", "padding_mask"}` and return hidden states `[batch, length, hidden_dim]`.
"""

from keras_unitscale.models.backbone import Backbone
from keras_unitscale.models.lstm_backbone import LSTMBackbone
from keras_unitscale.models.transformer_backbones import (
    TransformerDecoderBackbone,
    TransformerEncoderBackbone,
)

__all__ = ["Backbone", "LSTMBackbone", "TransformerDecoderBackbone", "TransformerEncoderBackbone"]
