"""`CausalLM`: a next-token language model, fitted on raw text, with `generate()`."""

import keras
from keras import ops

from keras_unitscale.layers.heads import LMHead
from keras_unitscale.models.generation import (
    GenerativeTask,
    check_max_length,
    decode_with_cache,
    generated_mask,
    strip_prompt_mask,
)
from keras_unitscale.models.backbones import (
    LSTMBackbone,
    TransformerDecoderBackbone,
    TransformerEncoderBackbone,
)
from keras_unitscale.models.mlp_backbone import MLPBackbone
from keras_unitscale.models.task import LazyClass
from keras_unitscale.models.task_inputs import check_preprocessor


@keras.saving.register_keras_serializable(package="keras_unitscale")
class CausalLM(GenerativeTask):
    """Causal language model: a decoder backbone and a unit-scaled readout to the vocabulary.

    With a `CausalLMPreprocessor` attached, `fit`, `evaluate` and `predict` take raw strings
    (each becomes `[START] ... [END]`, the labels are the ids shifted by one, padding has
    weight 0); a `tf.data.Dataset` from `preprocessor.pack_dataset` (full windows, no padding)
    can be fitted after setting `preprocessor=None`, or mapped yourself. `generate` continues
    prompts: strings in, strings out, one token a step with a key/value cache, stopping when
    every sequence has produced `[END]`, inside one compiled function (XLA on TensorFlow and
    JAX; see `keras_unitscale.models.generation`).

    The unit-scaled attention's output scale depends on the number of keys, which is the cache
    length `max_length` when generating: the default, the preprocessor's `sequence_length`,
    reproduces the training-time computation exactly.

    Args:
        backbone: a decoder backbone (the cache contract of `Backbone`): a
            `TransformerDecoderBackbone`, or a unidirectional `LSTMBackbone` (its cache is the
            `(h, c)` state of every layer).
        preprocessor: a `keras_unitscale.preprocessors.CausalLMPreprocessor`, or `None` to
            feed `{"token_ids", "padding_mask"}` yourself.
        tie_weights: the readout uses the transpose of the token embedding table (needs
            `embedding_dim == hidden_dim` for an LSTM backbone); else its own N(0, 1) kernel.
            The u-muP readout scale `1 / hidden_dim` applies either way.
        output_mult: u-muP's output multiplier on the logits (see `LMHead`).

    Example:
    >>> import keras_unitscale as ku
    >>> from keras_unitscale.models.backbones import TransformerDecoderBackbone
    >>> from keras_unitscale.preprocessors import CausalLMPreprocessor
    >>> from keras_unitscale.tokenizers import CharacterTokenizer
    >>> texts = ["我喜欢这本书", "这本书很好", "我很喜欢"] * 4
    >>> preprocessor = CausalLMPreprocessor(CharacterTokenizer.from_corpus(texts), 12)
    >>> backbone = TransformerDecoderBackbone(
    ...     vocabulary_size=preprocessor.tokenizer.vocabulary_size(), num_layers=1,
    ...     num_heads=2, hidden_dim=32, intermediate_dim=64, max_sequence_length=12)
    >>> model = ku.models.CausalLM(backbone, preprocessor)
    >>> model.compile()
    >>> _ = model.fit(texts, epochs=2, verbose=0)
    >>> isinstance(model.generate("我喜欢", max_length=12), str)
    True
    """

    backbone_cls = (TransformerDecoderBackbone, LSTMBackbone, MLPBackbone)
    preprocessor_cls = LazyClass("keras_unitscale.preprocessors", "CausalLMPreprocessor")
    text_inputs = {"text": "tokenizer"}
    serving_outputs = ("logits",)
    data_columns = {"text": "text"}
    command = "generate"
    # A transformer size decodes as a decoder; an LSTM reads left to right only.
    architecture_backbones = {
        TransformerEncoderBackbone: (TransformerDecoderBackbone, {}),
        LSTMBackbone: (LSTMBackbone, {"bidirectional": False}),
    }
    prompt_input = ("prompt", "tokenizer")
    end_token_tokenizer = "tokenizer"
    generated_keys = ("token_ids", "padding_mask")

    def __init__(self, backbone, preprocessor=None, tie_weights=True, output_mult=1.0, **kwargs):
        inputs = getattr(backbone, "input", None)
        if not (
            callable(getattr(backbone, "empty_cache", None))
            and callable(getattr(backbone, "call_with_cache", None))
            and isinstance(inputs, dict)
            and set(inputs) == {"token_ids", "padding_mask"}
        ):
            raise ValueError(
                "`backbone` must be a decoder backbone taking `token_ids` and `padding_mask`, "
                "with `empty_cache` and `call_with_cache` (a TransformerDecoderBackbone or a "
                f"unidirectional LSTMBackbone); received {type(backbone).__name__}."
            )
        backbone.empty_cache(1, 1)  # raises the backbone's reason if it cannot decode
        width = backbone.token_embedding.output_dim
        hidden_dim = getattr(backbone, "hidden_dim", width)
        if tie_weights and width != hidden_dim:
            raise ValueError(
                f"`tie_weights=True` needs the backbone's token embedding width (embedding_dim "
                f"{width}) to equal its hidden_dim ({hidden_dim})."
            )
        check_preprocessor(backbone, preprocessor)
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.tie_weights = bool(tie_weights)
        self.lm_head = LMHead(
            backbone.vocabulary_size,
            embedding=backbone.token_embedding if self.tie_weights else None,
            output_mult=output_mult,
            dtype=backbone.dtype_policy,
            name="lm_head",
        )
        # === Functional model ===
        outputs = self.lm_head(backbone(inputs))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

    # Decoding with a cache ------------------------------------------------------------------
    def empty_cache(self, batch_size, max_length):
        """The backbone's zero cache: KerasHub's `[batch, layers, 2, max_length, heads,
        head_dim]` for a transformer; the `(h, c)` state of every layer for an LSTM."""
        return self.backbone.empty_cache(batch_size, max_length)

    def call_with_cache(self, token_ids, cache, cache_update_index, padding_mask=None):
        """Logits of `token_ids [batch, T]` placed at `cache_update_index`.

        Returns `(logits, hidden_states, cache)`, as KerasHub's causal LMs; see the
        backbone's `call_with_cache`.
        """
        hidden, cache = self.backbone.call_with_cache(
            token_ids, cache, cache_update_index, padding_mask=padding_mask
        )
        return self.lm_head(hidden), hidden, cache

    def generate_step(self, inputs, sampler, stop_token_ids=None):
        """Continues one packed batch `{"token_ids", "padding_mask"}` (prompts on the left)."""
        token_ids = inputs["token_ids"]
        padding_mask = ops.cast(inputs["padding_mask"], "bool")
        cache = self.empty_cache(ops.shape(token_ids)[0], ops.shape(token_ids)[1])
        token_ids = decode_with_cache(
            self.call_with_cache, cache, token_ids, padding_mask, sampler, stop_token_ids, self,
            parallel_prefill=getattr(self.backbone, "parallel_prefill", True),
        )
        return {
            "token_ids": token_ids,
            "padding_mask": generated_mask(token_ids, padding_mask, stop_token_ids),
        }

    # Prompts --------------------------------------------------------------------------------
    def _generate_inputs(self, prompts, max_length):
        preprocessor = self.preprocessor
        if max_length is None:
            max_length = preprocessor.sequence_length
        start = int(bool(getattr(preprocessor, "add_start_token", True)))
        longest = start + max(len(ids) for ids in preprocessor.tokenizer(prompts))
        if longest == 0:
            raise ValueError(
                "Every prompt is empty and the preprocessor adds no start token: there is "
                "nothing to continue."
            )
        limit = getattr(self.backbone, "max_sequence_length", None)
        # A longer prompt keeps its end (the preprocessor truncates it), as long as one
        # position is left to generate after the start token.
        max_length = check_max_length(max_length, min(longest, start + 1), limit)
        return self.pack_prompts(prompts, max_length)

    def pack_prompts(self, prompts, length):
        """Prompts (a batch of strings or a string tensor) packed to `length` tokens, as
        `generate_step` takes them: `[START]` and the prompt's ids on the left."""
        return self.preprocessor.generate_preprocess(prompts, sequence_length=length)

    def _generate_outputs(self, outputs, inputs, strip_prompt):
        if strip_prompt:
            outputs = dict(outputs)
            outputs["padding_mask"] = strip_prompt_mask(
                outputs["padding_mask"], inputs["padding_mask"]
            )
        texts = self.preprocessor.generate_postprocess(outputs)
        return [texts] if isinstance(texts, str) else list(texts)

    def get_config(self):
        config = super().get_config()
        config.update(tie_weights=self.tie_weights, output_mult=self.lm_head.output_mult)
        return config
