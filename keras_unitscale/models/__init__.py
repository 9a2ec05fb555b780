"""Models: `UnitScaledModel`, backbones and task models."""

from keras_unitscale.models.unit_scaled_model import DEFAULT_LEARNING_RATE, UnitScaledModel
from keras_unitscale.models.task import Task
from keras_unitscale.models.backbones import (
    Backbone,
    LSTMBackbone,
    TransformerDecoderBackbone,
    TransformerEncoderBackbone,
)
from keras_unitscale.models.mlp_backbone import MLPBackbone
from keras_unitscale.models.seq2seq_backbone import Seq2SeqBackbone

# The tasks, in the order `registered_tasks()` lists them (their registration order).
from keras_unitscale.models.text_classifier import SequencePooling, TextClassifier
from keras_unitscale.models.generation import GenerativeTask
from keras_unitscale.models.causal_lm import CausalLM
from keras_unitscale.models.seq2seq_lm import Seq2SeqLM
