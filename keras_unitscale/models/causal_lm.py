"""`CausalLM`: a next-token language model, fitted on raw text, with `generate()`."""

import keras
from keras import ops

from keras_unitscale import ops as uops
from keras_unitscale.models.generation import (
    GenerativeTask,
    check_max_length,
    generated_mask,
    prefill,
    strip_prompt_mask,
)
from keras_unitscale.models.lm_head import LMHead


def _is_lstm_backbone(backbone):
    return hasattr(backbone, "lstm_layers")


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
        backbone: a `TransformerDecoderBackbone`, or a unidirectional `LSTMBackbone` (its
            cache is the `(h, c)` state of every layer).
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

    def __init__(self, backbone, preprocessor=None, tie_weights=True, output_mult=1.0, **kwargs):
        if _is_lstm_backbone(backbone):
            if getattr(backbone, "bidirectional", False):
                raise ValueError(
                    "A causal language model needs a unidirectional LSTMBackbone "
                    "(bidirectional=False): a backward LSTM would see the next tokens."
                )
            if tie_weights and backbone.embedding_dim != backbone.hidden_dim:
                raise ValueError(
                    "`tie_weights=True` needs the LSTMBackbone's embedding_dim "
                    f"({backbone.embedding_dim}) to equal its hidden_dim ({backbone.hidden_dim})."
                )
        elif not hasattr(backbone, "call_with_cache"):
            raise ValueError(
                "`backbone` must be a TransformerDecoderBackbone (with `call_with_cache`) or an "
                f"LSTMBackbone; received {type(backbone).__name__}."
            )
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
        inputs = backbone.input
        outputs = self.lm_head(backbone(inputs))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

    # Decoding with a cache ------------------------------------------------------------------
    def empty_cache(self, batch_size, max_length):
        """A zero cache: KerasHub's `[batch, layers, 2, max_length, heads, head_dim]` for a
        transformer, `[batch, layers, 2, units]` (`h`, `c`) for an LSTM."""
        backbone = self.backbone
        if _is_lstm_backbone(backbone):
            shape = (batch_size, backbone.num_layers, 2, backbone.hidden_dim)
            return ops.zeros(shape, dtype=self.compute_dtype)
        return backbone.empty_cache(batch_size, max_length)

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """Logits of `token_ids [batch, T]` placed at `cache_update_index`.

        Returns `(logits, hidden_states, cache)`, as KerasHub's causal LMs. An LSTM's cache is
        its state after the previous token, so it takes one token at a time in order.
        """
        if _is_lstm_backbone(self.backbone):
            hidden, cache = self._lstm_call_with_cache(token_ids, cache)
        else:
            hidden, cache = self.backbone.call_with_cache(token_ids, cache, cache_update_index)
        return self.lm_head(hidden), hidden, cache

    def _lstm_call_with_cache(self, token_ids, cache):
        # The LSTMBackbone runs whole sequences; step its layers' weights with the same op.
        x = self.backbone.token_embedding(token_ids)
        states = []
        for i, layer in enumerate(self.backbone.lstm_layers):
            _, x, (h, c) = uops.lstm(
                x,
                [cache[:, i, 0], cache[:, i, 1]],
                layer.cell.kernel,
                layer.cell.recurrent_kernel,
                layer.cell.bias,
                return_sequences=True,
                forget_bias=1.0 if layer.unit_forget_bias else 0.0,
                constraint=layer.constraint,
                use_fused=False,
            )
            states.append(ops.stack([h, ops.cast(c, h.dtype)], axis=1))
        return x, ops.stack(states, axis=1)

    def generate_step(self, inputs, sampler, stop_token_ids=None):
        """Continues one packed batch `{"token_ids", "padding_mask"}` (prompts on the left)."""
        token_ids = inputs["token_ids"]
        padding_mask = ops.cast(inputs["padding_mask"], "bool")
        batch, length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        cache = self.empty_cache(batch, length)
        if _is_lstm_backbone(self.backbone):
            # The state is built token by token: start after the first token and let the
            # sampler keep the prompt's own tokens where the mask is set.
            index = ops.convert_to_tensor(1, "int32")
            hidden = ops.zeros((batch, self.backbone.hidden_dim), self.compute_dtype)
        else:
            # One pass over the prompts fills the cache up to the shortest prompt's end; the
            # later positions are written as their tokens are chosen.
            index = ops.min(ops.sum(ops.cast(padding_mask, "int32"), axis=-1))

            def run(prefix_ids):
                _, hidden, new_cache = self.call_with_cache(prefix_ids, cache, 0)
                return hidden, new_cache

            hidden, cache = prefill(run, token_ids, index)

        def next(prompt, cache, index):
            token = ops.slice(prompt, [0, index - 1], [ops.shape(prompt)[0], 1])
            logits, hidden, cache = self.call_with_cache(token, cache, index - 1)
            return ops.squeeze(logits, 1), ops.squeeze(hidden, 1), cache

        token_ids = sampler(
            next=next, prompt=token_ids, cache=cache, index=index, mask=padding_mask,
            stop_token_ids=stop_token_ids, hidden_states=hidden, model=self,
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
        return preprocessor.generate_preprocess(prompts, sequence_length=max_length)

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
