"""Mutation check: would the tests notice a wrong scale or a mis-wired model?

Applies deliberate mistakes ("mutations") to the scale rules and the model wiring in
`keras_unitscale/`, one at a time, and runs the tests meant to catch each. A mutation that no
test fails on "survives": a test that should pin that rule down is too weak. The script prints
the survivors and exits with status 1 if there are any (2 if a mutation no longer applies).

It never touches the checkout it is run from. `keras_unitscale/`, `tests/` and
`pyproject.toml` are copied into a temporary directory (one copy per job); each mutation is a plain text
substitution, which must match exactly once, made in that copy, and undone after its run.
pytest runs in the copy with `PYTHONPATH` pointing at it, and a small plugin checks, before
any test runs, that `keras_unitscale` is imported from the copy (the editable install of the
checkout would otherwise win).

Usage:
    .venv/bin/python tools/mutation_check.py                  # JAX, every mutation
    .venv/bin/python tools/mutation_check.py --backend tensorflow
    .venv/bin/python tools/mutation_check.py --only attention --list
    .venv/bin/python tools/mutation_check.py --jobs 1           # one copy, one run at a time

Run it before merging a change to `keras_unitscale/ops/`, `keras_unitscale/layers/` or the
model wiring (CONTRIBUTING.md, "Mutation check"). With `--jobs 2` (the default: two mutations at
a time, each alone in its own copy of the package) the 57 mutations took 547 s on a quiet 2-core
CPU (JAX, 2026-11-28); one at a time, about 18 minutes (most of a run is pytest starting).
"""

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Mutation:
    name: str  # short id, "family/what"
    path: str  # file under keras_unitscale/
    subs: list  # [(old, new)]: each `old` must occur exactly once in the file
    tests: list  # pytest node ids (tests/...), most likely to fail first
    why: str = ""
    extra: list = field(default_factory=list)  # more files' substitutions: [(path, old, new)]
    # The backends whose code path the mutated line is on (a line only one backend runs
    # survives on the other whatever the tests do).
    backends: tuple = ("jax", "tensorflow")


M = Mutation
T_LIN = "tests/ops/test_linear.py"
T_ATT = "tests/ops/test_attention.py"
T_REC = "tests/ops/test_recurrent.py"

MUTATIONS = [
    # --- linear -----------------------------------------------------------------------------
    M("linear/output x2", "ops/linear.py",
      [("apply_constraint(constraint, fan_in**-0.5, fan_out**-0.5)",
        "apply_constraint(constraint, 2 * fan_in**-0.5, fan_out**-0.5)")],
      [f"{T_LIN}::test_linear_unconstrained_is_unit_everywhere",
       f"{T_LIN}::test_linear_constraints_trade_output_for_input_grad"]),
    M("linear/input grad x0.5 (unconstrained)", "ops/linear.py",
      [("apply_constraint(constraint, fan_in**-0.5, fan_out**-0.5)",
        "apply_constraint(constraint, fan_in**-0.5, 0.5 * fan_out**-0.5)")],
      [f"{T_LIN}::test_linear_unconstrained_is_unit_everywhere",
       f"{T_LIN}::test_linear_constraints_trade_output_for_input_grad"]),
    M("linear/weight grad x0.5", "ops/linear.py",
      [("y = _scaled_product(x, w, out_scale, grad_in_scale, rsqrt_size(batch), fp8)",
        "y = _scaled_product(x, w, out_scale, grad_in_scale, 0.5 * rsqrt_size(batch), fp8)")],
      [f"{T_LIN}::test_linear_unconstrained_is_unit_everywhere",
       "tests/layers/test_dense.py::test_dense_is_unit_scaled"]),
    M("linear/bias grad x2", "ops/linear.py",
      [("return y + scale_bwd(b, rsqrt_size(batch))",
        "return y + scale_bwd(b, 2 * rsqrt_size(batch))")],
      [f"{T_LIN}::test_linear_unconstrained_is_unit_everywhere",
       "tests/layers/test_dense.py::test_dense_is_unit_scaled"]),
    M("linear/matmul output x2", "ops/linear.py",
      [("constraint, float(k) ** -0.5, float(n) ** -0.5, float(m) ** -0.5",
        "constraint, 2 * float(k) ** -0.5, float(n) ** -0.5, float(m) ** -0.5")],
      [f"{T_LIN}::test_matmul_of_two_activations"]),
    M("readout/output x2", "ops/linear.py",
      [("y = _scaled_product(x, w, mult / fan_in, fan_out**-0.5,",
        "y = _scaled_product(x, w, 2 * mult / fan_in, fan_out**-0.5,")],
      [f"{T_LIN}::test_readout_is_small_forward_and_unit_backward",
       "tests/layers/test_heads.py::test_untied_readout_scale_and_multiplier"]),
    # --- embedding --------------------------------------------------------------------------
    M("embedding/table grad x2", "ops/embedding.py",
      [("grad_scale = (vocab / max(num_tokens, 1)) ** 0.5",
        "grad_scale = 2 * (vocab / max(num_tokens, 1)) ** 0.5")],
      ["tests/ops/test_embedding.py::test_embedding_table_grad_is_unit",
       "tests/layers/test_embedding.py::test_embedding_is_unit_scaled"]),
    # --- norms ------------------------------------------------------------------------------
    M("norms/gain grad x2", "ops/norms.py",
      [("y = y * ops.cast(scale_bwd(gamma, rsqrt_size(batch)), y.dtype)",
        "y = y * ops.cast(scale_bwd(gamma, 2 * rsqrt_size(batch)), y.dtype)")],
      ["tests/ops/test_norms.py", "tests/layers/test_normalization.py::"
       "test_norm_layers_are_unit_scaled"]),
    M("norms/bias grad x0.5", "ops/norms.py",
      [("y = y + ops.cast(scale_bwd(beta, rsqrt_size(batch)), y.dtype)",
        "y = y + ops.cast(scale_bwd(beta, 0.5 * rsqrt_size(batch)), y.dtype)")],
      ["tests/ops/test_norms.py", "tests/layers/test_normalization.py::"
       "test_norm_layers_are_unit_scaled"]),
    # --- residual ---------------------------------------------------------------------------
    M("residual/add output x2", "ops/residual.py",
      [("apply_constraint(constraint, 2**-0.5, 1.0, 1.0)",
        "apply_constraint(constraint, 2**0.5, 1.0, 1.0)")],
      ["tests/ops/test_residual.py::test_add_scales"]),
    M("residual/branch weight x2 forward", "ops/residual.py",
      [("return scale_fwd(residual, a) + scale_fwd(skip, b)",
        "return scale_fwd(residual, 2 * a) + scale_fwd(skip, b)")],
      ["tests/ops/test_residual.py::test_residual_keeps_unit_stream_and_true_gradient",
       "tests/layers/test_residual.py::test_residual_stack_stays_unit"]),
    M("residual/branch gradient x0.5", "ops/residual.py",
      [("return scale_bwd(x, a), scale_bwd(x, b)", "return scale_bwd(x, 0.5 * a), scale_bwd(x, b)")],
      ["tests/ops/test_residual.py::test_residual_keeps_unit_stream_and_true_gradient",
       "tests/layers/test_residual.py::test_residual_stack_stays_unit"]),
    M("residual/depth rule: attention and MLP taus swapped", "ops/residual.py",
      [("return [(taus[2 * i], taus[2 * i + 1]) for i in range(int(num_blocks))]",
        "return [(taus[2 * i + 1], taus[2 * i]) for i in range(int(num_blocks))]")],
      ["tests/ops/test_residual.py::test_depth_rule_gives_every_branch_its_share"]),
    M("embedding/token and position embeddings added unscaled", "layers/position.py",
      [("return uops.add(tokens, positions, constraint=None)", "return tokens + positions")],
      ["tests/layers/test_position.py::test_token_and_position_embedding",
       "tests/models/test_backbones.py::test_residual_stream_and_gradients_before_the_final_norm"]),
    M("residual/transformer MLP branch weight x2", "layers/transformer_block.py",
      [("return self._branch(x, self.tau[\"mlp\"], mlp)",
        "return self._branch(x, 2 * self.tau[\"mlp\"], mlp)")],
      ["tests/layers/test_transformer.py::test_block_is_unit_scaled"]),
    # --- attention / softmax ----------------------------------------------------------------
    M("attention/output scale x2", "ops/attention.py",
      [("out = out * ops.cast(scale, out.dtype)", "out = out * ops.cast(2 * scale, out.dtype)")],
      [f"{T_ATT}::test_attention_is_unit_at_initialisation"]),
    M("attention/logit scale x2", "ops/attention.py",
      [("logit_scale = float(mult) / head_dim", "logit_scale = 2 * float(mult) / head_dim")],
      [f"{T_ATT}::test_attention_is_unit_at_initialisation"]),
    M("attention/logit scale 1/sqrt(d_head)", "ops/attention.py",
      [("logit_scale = float(mult) / head_dim", "logit_scale = float(mult) / head_dim**0.5")],
      [f"{T_ATT}::test_attention_is_unit_at_initialisation"]),
    M("attention/scale from the padded length", "ops/attention.py",
      [("counts = attended_keys(mask, is_causal, num_queries, num_keys, query_offset)",
        "counts = num_keys")],
      [f"{T_ATT}::test_each_causal_row_is_unit",
       f"{T_ATT}::test_padding_after_the_real_tokens_changes_nothing"]),
    M("attention/causal mask dropped", "ops/attention.py",
      [("        if is_causal:\n            allowed = causal_mask(",
        "        if False:\n            allowed = causal_mask(")],
      [f"{T_ATT}::test_causal_output_ignores_later_keys_and_offset_matches_rows"]),
    M("attention/causal mask off by one", "ops/attention.py",
      [("return ops.greater_equal(i, j)", "return ops.greater_equal(i + 1, j)")],
      [f"{T_ATT}::test_causal_output_ignores_later_keys_and_offset_matches_rows"]),
    M("attention/decoder block not causal", "layers/transformer.py",
      [("h, h, attention_mask=self_mask, use_causal_mask=use_causal_mask,",
        "h, h, attention_mask=self_mask, use_causal_mask=False,")],
      ["tests/layers/test_transformer.py::test_decoder_is_causal",
       "tests/models/test_backbones.py::test_decoder_is_causal"]),
    M("attention/cache index off by one", "layers/attention.py",
      [("start = 0 if cache_update_index is None else cache_update_index",
        "start = 0 if cache_update_index is None else cache_update_index + 1")],
      ["tests/layers/test_attention.py::test_cached_decoding_matches_full_pass"]),
    M("attention/value bias grad x2", "ops/attention.py",
      [("bias = scale_bwd(value_bias, rsqrt_size(leading_size(out, trailing_dims=2)))",
        "bias = scale_bwd(value_bias, 2 * rsqrt_size(leading_size(out, trailing_dims=2)))")],
      ["tests/layers/test_attention.py::test_self_attention_is_unit_scaled"]),
    M("softmax/forward x2", "ops/softmax.py",
      [("return d / math.sqrt(math.e - 1.0), d / math.sqrt(math.e)",
        "return 2 * d / math.sqrt(math.e - 1.0), d / math.sqrt(math.e)")],
      ["tests/ops/test_softmax.py"]),
    M("softmax/grad x0.5", "ops/softmax.py",
      [("return d / math.sqrt(math.e - 1.0), d / math.sqrt(math.e)",
        "return d / math.sqrt(math.e - 1.0), 0.5 * d / math.sqrt(math.e)")],
      ["tests/ops/test_softmax.py"]),
    # --- cross-entropy ----------------------------------------------------------------------
    M("cross-entropy/loss-gradient scale removed", "ops/cross_entropy.py",
      [("logits = scale_bwd(logits, scale)", "logits = scale_bwd(logits, 1.0)")],
      ["tests/ops/test_cross_entropy.py::test_value_equals_keras_and_logit_grad_is_unit",
       "tests/test_losses.py::test_logit_gradient_is_unit_for_any_batch"],
      why="TensorFlow's float32 path (Keras' loss behind scale_bwd)",
      backends=("tensorflow",)),
    M("cross-entropy/fused op's loss-gradient scale removed", "ops/cross_entropy.py",
      [('ops.cast(g, "float32") * ops.cast(scale, "float32")', 'ops.cast(g, "float32")')],
      ["tests/ops/test_cross_entropy.py::test_value_equals_keras_and_logit_grad_is_unit",
       "tests/test_losses.py::test_logit_gradient_is_unit_for_any_batch"],
      why="the fused op: every dtype on JAX, 16-bit logits on TensorFlow",
      backends=("jax",)),
    M("cross-entropy/logit grad x2", "ops/cross_entropy.py",
      [("factor = vocab / max(vocab - 1, 1) ** 0.5", "factor = 2 * vocab / max(vocab - 1, 1) ** 0.5")],
      ["tests/ops/test_cross_entropy.py::test_value_equals_keras_and_logit_grad_is_unit"]),
    # --- recurrent --------------------------------------------------------------------------
    M("recurrent/h-path scale x0.5", "ops/recurrent_scales.py",
      [("RecurrentScales(x_fwd, x_bwd, kappa * (eta2 / units) ** 0.5, kappa,",
        "RecurrentScales(x_fwd, x_bwd, 0.5 * kappa * (eta2 / units) ** 0.5, kappa,")],
      [f"{T_REC}::test_derived_scales_match_a_monte_carlo_simulation[lstm]",
       "tests/layers/test_lstm.py::test_lstm_is_unit_scaled_at_initialisation"]),
    M("recurrent/h-path scale x1.2 (a 20% error)", "ops/recurrent_scales.py",
      [("RecurrentScales(x_fwd, x_bwd, kappa * (eta2 / units) ** 0.5, kappa,",
        "RecurrentScales(x_fwd, x_bwd, 1.2 * kappa * (eta2 / units) ** 0.5, kappa,")],
      [f"{T_REC}::test_derived_scales_match_a_monte_carlo_simulation[lstm]"]),
    M("recurrent/x-path scale x2", "ops/recurrent_scales.py",
      [("fwd = ((1.0 - eta2) / input_dim) ** 0.5", "fwd = 2 * ((1.0 - eta2) / input_dim) ** 0.5")],
      [f"{T_REC}::test_derived_scales_match_a_monte_carlo_simulation[lstm]",
       "tests/layers/test_lstm.py::test_lstm_is_unit_scaled_at_initialisation"]),
    M("recurrent/output (kappa) x2", "ops/recurrent.py",
      [("    k = scales.output\n", "    k = 2 * scales.output\n")],
      [f"{T_REC}::test_derived_scales_match_a_monte_carlo_simulation[lstm]",
       "tests/layers/test_lstm.py::test_lstm_is_unit_scaled_at_initialisation",
       "tests/models/test_text_classifier.py::test_scales_near_unit_at_initialisation"]),
    M("recurrent/LSTM kappa x2 (whole derivation)", "ops/recurrent_scales.py",
      [("kappa = (sig2 * tanh_c2) ** -0.5", "kappa = 2 * (sig2 * tanh_c2) ** -0.5")],
      [f"{T_REC}::test_moments_follow_the_derivation",
       "tests/layers/test_lstm.py::test_lstm_is_unit_scaled_at_initialisation"]),
    M("recurrent/weight grads x0.5", "ops/recurrent.py",
      [("    g = rsqrt_size(contributions)\n", "    g = 0.5 * rsqrt_size(contributions)\n")],
      ["tests/layers/test_lstm.py::test_lstm_is_unit_scaled_at_initialisation",
       "tests/layers/test_gru.py::test_gru_is_unit_scaled_at_initialisation"]),
    M("recurrent/GRU recurrent kernel grad x0.5", "ops/recurrent_scales.py",
      [("q_h = RHO / (eta2 * kappa**2)\n", "q_h = 4 * RHO / (eta2 * kappa**2)\n")],
      ["tests/layers/test_gru.py::test_gru_is_unit_scaled_at_initialisation",
       f"{T_REC}::test_gru_moments"]),
    M("recurrent/weight grads x1.2 (a 20% error)", "ops/recurrent.py",
      [("    g = rsqrt_size(contributions)\n", "    g = 1.2 * rsqrt_size(contributions)\n")],
      [f"{T_REC}::test_non_cut_gradients_are_exact_and_weight_gradients_only_rescaled[lstm]",
       f"{T_REC}::test_non_cut_gradients_are_exact_and_weight_gradients_only_rescaled[gru]"]),
    M("recurrent/weight-grad factor omega x1.2 (a 20% error)", "ops/recurrent_scales.py",
      [("omega = (gates * (1.0 - rho) / (q_x * kappa**2)) ** 0.5",
        "omega = 1.2 * (gates * (1.0 - rho) / (q_x * kappa**2)) ** 0.5")],
      [f"{T_REC}::test_derived_scales_match_a_monte_carlo_simulation",
       "tests/layers/test_lstm.py::test_lstm_is_unit_scaled_at_initialisation"]),
    M("recurrent/LSTM bias grad x0.8 (a 20% error)", "ops/recurrent.py",
      [("        bias = scale_bwd(bias, g)\n", "        bias = scale_bwd(bias, 0.8 * g)\n")],
      ["tests/layers/test_lstm.py::test_lstm_is_unit_scaled_at_initialisation",
       f"{T_REC}::test_non_cut_gradients_are_exact_and_weight_gradients_only_rescaled[lstm]"]),
    M("recurrent/U-grad factor x1.2 (a 20% error)", "ops/recurrent_scales.py",
      [("u_grad = kappa * (q_x / q_h) ** 0.5", "u_grad = 1.2 * kappa * (q_x / q_h) ** 0.5")],
      [f"{T_REC}::test_one_step_backward_matches_a_monte_carlo_simulation",
       "tests/layers/test_lstm.py::test_one_step_recurrent_kernel_grad_matches_the_kernel_grad",
       "tests/layers/test_gru.py::test_one_step_recurrent_kernel_grad_matches_the_kernel_grad"]),
    M("recurrent/GRU U-grad factor x0.8 (a 20% error)", "ops/recurrent_scales.py",
      [("u_grad = kappa * (q_x / q_h) ** 0.5",
        "u_grad = (0.8 if rho != RHO else 1.0) * kappa * (q_x / q_h) ** 0.5")],
      [f"{T_REC}::test_one_step_backward_matches_a_monte_carlo_simulation[gru]",
       "tests/layers/test_gru.py::test_one_step_recurrent_kernel_grad_matches_the_kernel_grad"],
      why="the GRU alone (the LSTM's rho is RHO)"),
    M("recurrent/GRU h-path scale x0.8 (a 20% error)", "ops/recurrent_scales.py",
      [("    return _scales(input_dim, units, kappa, eta2, q_x, q_h, rho, constraint, gates=3)\n",
        "    s = _scales(input_dim, units, kappa, eta2, q_x, q_h, rho, constraint, gates=3)\n"
        "    return s._replace(recurrent=0.8 * s.recurrent)\n")],
      [f"{T_REC}::test_one_step_backward_matches_a_monte_carlo_simulation[gru]",
       "tests/layers/test_gru.py::test_gru_is_unit_scaled_at_initialisation"]),
    # --- MLP backbone -----------------------------------------------------------------------
    M("mlp-backbone/output x1.2 (a 20% error)", "models/mlp_backbone.py",
      [("        return self.hidden(x)\n", "        return 1.2 * self.hidden(x)\n")],
      ["tests/models/test_mlp_backbone.py::test_unit_output_and_derived_gradient_scales"]),
    M("mlp-backbone/window one token ahead (sees the next token)", "models/mlp_backbone.py",
      [("padded = ops.pad(ids, [[0, 0], [window - 1, 0]], constant_values=padding_token_id)",
        "padded = ops.pad(ids, [[0, 0], [window - 2, 1]], constant_values=padding_token_id)")],
      ["tests/models/test_mlp_backbone.py::test_each_position_sees_exactly_its_window",
       "tests/models/test_mlp_backbone.py::test_cache_matches_the_full_pass"]),
    # --- gated MLP --------------------------------------------------------------------------
    M("gated-mlp/product x1.2 (a 20% error)", "layers/mlp.py",
      [("hidden = gate * self.up(inputs)", "hidden = 1.2 * gate * self.up(inputs)")],
      ["tests/layers/test_mlp.py::test_gated_mlp_scales",
       "tests/layers/test_transformer.py::test_block_is_unit_scaled"]),
    # --- activations ------------------------------------------------------------------------
    M("activations/forward x2", "ops/activations.py",
      [("    fwd = float(var) ** -0.5\n", "    fwd = 2 * float(var) ** -0.5\n")],
      ["tests/ops/test_activations.py::test_unconstrained_activation_is_unit_both_ways"]),
    M("activations/forward x1.2 (a 20% error)", "ops/activations.py",
      [("    fwd = float(var) ** -0.5\n", "    fwd = 1.2 * float(var) ** -0.5\n")],
      ["tests/ops/test_activations.py::test_unconstrained_activation_is_unit_both_ways"]),
    M("activations/grad x0.5", "ops/activations.py",
      [("return fwd, float(grad_sq) ** -0.5, float(mean) * fwd",
        "return fwd, 0.5 * float(grad_sq) ** -0.5, float(mean) * fwd")],
      ["tests/ops/test_activations.py::test_unconstrained_activation_is_unit_both_ways"]),
    # --- dropout ----------------------------------------------------------------------------
    M("dropout/kept values not rescaled to unit", "ops/dropout.py",
      [("return y * (1.0 - rate) ** 0.5", "return y")],
      ["tests/ops/test_dropout.py", "tests/layers/test_dropout.py"]),
    M("dropout/layer never drops", "layers/dropout.py",
      [("if training and self.rate > 0:", "if False:")],
      ["tests/layers/test_dropout.py"]),
    M("dropout/active at inference", "layers/dropout.py",
      [("if training and self.rate > 0:", "if self.rate > 0:")],
      ["tests/layers/test_dropout.py"]),
    M("dropout/attention probabilities never dropped", "ops/attention.py",
      [("dropped = _dropout(probs, rate, seed=seed) if rate > 0.0 else probs",
        "dropped = probs")],
      [f"{T_ATT}::test_dropout_on_probabilities_keeps_unit_scale",
       "tests/layers/test_dropout.py"]),
    M("dropout/MultiHeadAttention ignores its rate", "layers/attention.py",
      [("dropout_rate=self.dropout if training else 0.0,", "dropout_rate=0.0,")],
      ["tests/layers/test_dropout.py::test_dropout_inside_layers_is_active_in_training_only"]),
    M("dropout/transformer MLP branch dropout off", "layers/transformer_block.py",
      [("return self.mlp_dropout(h, training=training)", "return h")],
      ["tests/layers/test_dropout.py::test_every_dropout_inside_a_block_drops_in_training_only"]),
    M("dropout/encoder attention branch dropout off", "layers/transformer.py",
      [("return self.attention_dropout(h, training=training)", "return h")],
      ["tests/layers/test_dropout.py::test_every_dropout_inside_a_block_drops_in_training_only"]),
    # --- constraints ------------------------------------------------------------------------
    M("constraints/to_output_scale and to_grad_input_scale swapped", "ops/constraints.py",
      [("if constraint == \"to_output_scale\":\n        s = output_scale\n"
        "    elif constraint == \"to_grad_input_scale\":\n        s = grad",
        "if constraint == \"to_output_scale\":\n        s = grad\n"
        "    elif constraint == \"to_grad_input_scale\":\n        s = output_scale")],
      ["tests/ops/test_constraints.py", f"{T_LIN}::test_linear_constraints_trade_output_for_input_grad"]),
    M("constraints/gmean is the arithmetic mean", "ops/constraints.py",
      [("s = (output_scale * grad) ** 0.5", "s = (output_scale + grad) / 2")],
      ["tests/ops/test_constraints.py"]),
    # --- model wiring -----------------------------------------------------------------------
    M("wiring/readout untied", "layers/heads.py",
      [("if not self.tied:\n            self.kernel", "if True:\n            self.kernel"),
       ("kernel = ops.transpose(self._table()) if self.tied else self.kernel_value(\"kernel\")",
        "kernel = self.kernel_value(\"kernel\")")],
      ["tests/layers/test_heads.py::test_tied_head_reads_the_embedding_table",
       "tests/models/test_causal_lm.py::test_tied_and_untied_readout"]),
]


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="jax", choices=["jax", "tensorflow"])
    p.add_argument("--only", default=None,
                   help="run the mutations whose name contains one of these comma-separated "
                        "strings")
    p.add_argument("--list", action="store_true", help="list the mutations and exit")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per mutation run")
    p.add_argument("--jobs", type=int, default=2,
                   help="mutations run at the same time, each alone in its own copy of the "
                        "package (default 2: one per core of the CI machine)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip checking that the selected tests pass unmutated")
    return p.parse_args()


GUARD = '''
import os
import keras_unitscale

def pytest_sessionstart(session):
    root = os.environ["MUTATION_CHECK_ROOT"]
    path = os.path.realpath(keras_unitscale.__file__)
    if not path.startswith(os.path.realpath(root) + os.sep):
        raise SystemExit(f"mutation_check: imported {path}, not the copy under {root}")
'''


def _copy(tmp):
    shutil.copytree(ROOT / "keras_unitscale", tmp / "keras_unitscale",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests", tmp / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    (tmp / "_mutation_guard.py").write_text(GUARD)


def _env(tmp, backend):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp), str(tmp / "tests")])
    env["KERAS_BACKEND"] = backend
    env["MUTATION_CHECK_ROOT"] = str(tmp)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def _pytest(tmp, env, tests, timeout, workers=1):
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
           "-p", "_mutation_guard", "--no-header", "-rfE", *tests]
    if workers > 1:
        cmd[3:3] = ["-n", str(workers)]
    try:
        r = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timeout"
    return r.returncode, r.stdout + r.stderr


def _substitute(text, old, new, where):
    n = text.count(old)
    if n != 1:
        raise LookupError(f"{where}: pattern matches {n} times (must be exactly once):\n{old}")
    return text.replace(old, new)


def _mutated(tmp, m):
    """`{path: (original, mutated)}` for mutation `m`; raises LookupError if a pattern fails."""
    edits = {}
    for path, old, new in [(m.path, o, n) for o, n in m.subs] + list(m.extra):
        file = tmp / "keras_unitscale" / path
        original, text = edits.get(path, (file.read_text(), None))
        text = _substitute(text if text is not None else original, old, new, f"{m.name} ({path})")
        edits[path] = (original, text)
    for path, (_, text) in edits.items():
        compile(text, path, "exec")  # a mutation must stay valid Python
    return edits


def main():
    args = _parse()
    wanted = None if args.only is None else [w for w in args.only.split(",") if w]
    mutations = [m for m in MUTATIONS if wanted is None or any(w in m.name for w in wanted)]
    mutations = [m for m in mutations if args.backend in m.backends]
    if args.list:
        for m in mutations:
            print(f"{m.name:55s} {m.path}\n    " + "\n    ".join(m.tests))
        return 0
    if args.jobs < 1:
        raise SystemExit(f"mutation_check: --jobs must be at least 1; received {args.jobs}.")
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="mutation_check_") as tmp:
        # One copy per job: each mutation is made, run and undone alone in its copy.
        copies = [Path(tmp) / f"copy{j}" for j in range(args.jobs)]
        for copy in copies:
            copy.mkdir()
            _copy(copy)
        envs = {copy: _env(copy, args.backend) for copy in copies}
        # Every pattern must apply before anything runs.
        try:
            for m in mutations:
                _mutated(copies[0], m)
        except LookupError as e:
            print(f"mutation_check: the source changed, a mutation no longer applies: {e}")
            return 2
        if not args.no_baseline:
            tests = sorted({t for m in mutations for t in m.tests})
            rc, out = _pytest(copies[0], envs[copies[0]], tests, args.timeout * 2,
                              workers=args.jobs)
            if rc != 0:
                print(out[-4000:])
                print("mutation_check: the selected tests fail without any mutation; fix them "
                      "first (a failure would count as a catch).")
                return 2
            print(f"baseline: {len(tests)} test selections pass ({time.time() - start:.0f}s)")
        free = list(copies)
        lock = threading.Lock()
        survivors, errors = [], []

        def run(i, m):
            with lock:
                copy = free.pop()
            t0 = time.time()
            edits = _mutated(copy, m)
            try:
                for path, (_, text) in edits.items():
                    (copy / "keras_unitscale" / path).write_text(text)
                rc, out = _pytest(copy, envs[copy], m.tests, args.timeout)
            finally:
                for path, (original, _) in edits.items():
                    (copy / "keras_unitscale" / path).write_text(original)
                with lock:
                    free.append(copy)
            seconds = time.time() - t0
            with lock:
                if rc in (2, 3, 4, 5) and "FAILED" not in out:
                    # Interrupted on a collection error, internal error, usage error (a test
                    # id that does not exist) or nothing collected: not a catch.
                    print(out[-1500:])
                    print(f"[{i:2d}/{len(mutations)}] {m.name:55s} ERROR: pytest could not "
                          f"run its tests (exit {rc})", flush=True)
                    errors.append(m)
                    return
                if rc == 0:
                    verdict = "SURVIVED"
                    survivors.append(m)
                elif rc is None:
                    verdict = "caught (timeout)"
                else:
                    failed = re.findall(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", out, re.M)
                    verdict = "caught by " + (failed[0] if failed else f"pytest exit {rc}")
                print(f"[{i:2d}/{len(mutations)}] {m.name:55s} {seconds:5.0f}s  {verdict}",
                      flush=True)

        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for future in [pool.submit(run, i, m) for i, m in enumerate(mutations, 1)]:
                future.result()
    print(f"\n{len(mutations)} mutations, {len(survivors)} survived, "
          f"{time.time() - start:.0f}s on {args.backend}")
    for m in survivors:
        print(f"  SURVIVED: {m.name} ({m.path}); tests run: {' '.join(m.tests)}")
    for m in errors:
        print(f"  ERROR (tests did not run): {m.name}; tests: {' '.join(m.tests)}")
    return 2 if errors else 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
