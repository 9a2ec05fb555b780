"""The `keras-unitscale` command: every sub-command on tiny presets saved into a temp dir.

Every check of a command's behaviour runs in-process through `main(argv)` (a subprocess pays
seconds of imports). The installed entry point itself runs in a fresh process twice: `presets`
(no model) and `predict` (a saved preset loaded, text tokenized, a prediction printed), which is
what a user types; the other commands differ from these only inside `main`.
"""

import os
import re
import subprocess
import sys

import pytest

from keras_unitscale import _quiet
from keras_unitscale.cli import build_parser, main
from presets.tiny_models import EN, ZH, tiny_causal_lm, tiny_classifier, tiny_seq2seq_lm

COMMANDS = ["presets", "predict", "translate", "generate", "train", "evaluate", "export", "demo"]


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """Tiny random task presets, and untrained architecture presets to train from."""
    import keras

    from keras_unitscale.models.backbones import LSTMBackbone
    from keras_unitscale.models.seq2seq_backbone import Seq2SeqBackbone
    from keras_unitscale.presets import save_preset

    root = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    save_preset(tiny_classifier(), root / "classifier",
                metadata={"label_names": ["negative", "positive"]})
    save_preset(tiny_causal_lm(), root / "causal_lm")
    save_preset(tiny_seq2seq_lm(), root / "seq2seq_lm")
    save_preset(LSTMBackbone(10, hidden_dim=4), root / "lstm_arch", include_weights=False)
    save_preset(Seq2SeqBackbone(10, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
                                max_sequence_length=8, decoder_vocabulary_size=10),
                root / "seq2seq_arch", include_weights=False)
    (root / "reviews.csv").write_text(
        "text,label\n" + "".join(f"{t},{'pos' if i % 2 else 'neg'}\n" for i, t in enumerate(ZH)),
        encoding="utf-8")
    (root / "lines.txt").write_text("\n".join(ZH) + "\n", encoding="utf-8")
    (root / "pairs.tsv").write_text(
        "zh\ten\n" + "".join(f"{z}\t{e}\n" for z, e in zip(ZH, EN)), encoding="utf-8")
    return root


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(capsys, command):
    with pytest.raises(SystemExit) as exit:
        main([command, "--help"])
    assert exit.value.code == 0
    assert f"usage: keras-unitscale {command}" in capsys.readouterr().out


def test_presets_lists_names_and_descriptions(capsys):
    code, out, _ = run(capsys, "presets", "--task", "TextClassifier")
    assert code == 0
    assert "transformer_tiny" in out and "untrained" in out and "zh_en_translator" not in out


def test_predict_prints_label_probability_and_text(capsys, presets):
    code, out, _ = run(capsys, "predict", presets / "classifier", ZH[0], ZH[1])
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2 and lines[1].endswith(ZH[1])
    label, probability, _ = lines[0].split("\t")
    assert label in ("negative", "positive") and 0.5 <= float(probability) <= 1.0


def test_translate_and_generate_print_text_and_progress(capsys, presets):
    code, out, err = run(capsys, "translate", presets / "seq2seq_lm", ZH[0], ZH[1],
                         "--max-length", 6)
    assert code == 0 and len(out.splitlines()) == 2
    assert err.splitlines() == [
        f"keras-unitscale: loading {presets / 'seq2seq_lm'} ...",
        "keras-unitscale: translating (the first call compiles the decoder: seconds) ..."]
    code, out, err = run(capsys, "generate", presets / "causal_lm", "这本", "--max-length", 6,
                         "--verbose")  # after the command's name too
    assert code == 0 and out.startswith("这本")
    assert err.splitlines()[-1].startswith("keras-unitscale: generating (the first call")


def test_library_log_lines_are_recognised():
    # Lines TensorFlow and XLA print on a CPU machine (C++ and absl-py), and ours.
    library = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to "
        "STDERR",
        "I0000 00:00:1795848850.429070   20874 cudart_stub.cc:31] Could not find cuda drivers "
        "on your machine, GPU will not be used.",
        "E0000 00:00:1795848860.412154   20874 cuda_platform.cc:52] failed call to cuInit",
        "I1128 06:12:01.123456 140012 cpu_feature_guard.cc:227] This TensorFlow binary is "
        "optimized to use available CPU instructions",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild "
        "TensorFlow with the appropriate compiler flags.",
        "W1128 07:01:02.345678 1234 builder_impl.py:801] Assets written to: /tmp/x/assets",
    ]
    ours = ["keras-unitscale: loading zh_reviews_gpt ...", "keras-unitscale: error: no such",
            "I love cats", "usage: keras-unitscale predict [-h] [--verbose] preset TEXT"]
    assert all(_quiet.is_library_log_line(line) for line in library)
    assert not any(_quiet.is_library_log_line(line) for line in ours)


def test_verbose_leaves_the_libraries_alone(capsys, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    assert run(capsys, "--verbose", "presets")[0] == 0
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    assert run(capsys, "presets")[0] == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"


def test_generate_takes_several_prompts_and_sampler_options(capsys, presets):
    code, out, _ = run(capsys, "generate", presets / "causal_lm", "这本", "我", "--max-length", 6)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 and lines[0].startswith("这本") and lines[1][0] == "我"
    for options in (["--sampler", "top_k", "--top-k", 3], ["--sampler", "top_p", "--top-p", 0.5]):
        runs = [run(capsys, "generate", presets / "causal_lm", "这本", "--max-length", 8,
                    "--seed", 1, *options) for _ in range(2)]
        assert all(code == 0 for code, _, _ in runs), runs
        assert runs[0][1] == runs[1][1]  # the same seed, the same text
    # Another seed, another text: the sampler samples (greedy decoding would repeat itself) and
    # --seed reaches it (the two runs above would differ if the global seed drove it alone).
    code, other, _ = run(capsys, "generate", presets / "causal_lm", "这本", "--max-length", 8,
                         "--seed", 2, "--sampler", "top_k", "--top-k", 3)
    assert code == 0 and other.startswith("这本") and other != runs[0][1]
    code, _, err = run(capsys, "generate", presets / "causal_lm", "x", "--sampler", "top_k",
                       "--top-k", 0)
    assert code != 0 and "--top-k must be a positive integer" in err


def test_version(capsys):
    import keras_unitscale

    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.strip() == f"keras-unitscale {keras_unitscale.__version__}"


@pytest.mark.parametrize("task, data, options", [
    ("text_classifier", "reviews.csv", []),
    ("causal_lm", "lines.txt", ["--tokenizer", "character"]),
])
def test_train_then_evaluate(capsys, presets, tmp_path, task, data, options):
    output = tmp_path / "trained"
    code, out, err = run(capsys, "train", task, "--data", presets / data, "--preset",
                         presets / "lstm_arch", "--output", output, "--epochs", 1,
                         "--sequence-length", 8, *options)
    assert code == 0, err
    assert "saved a" in out and os.path.isfile(output / "task.json")
    code, out, err = run(capsys, "evaluate", output, "--data", presets / data)
    assert code == 0, err
    assert "loss: " in out and "accuracy: " in out


def _epoch_losses(out):
    """The loss Keras' progress bar shows at the end of each epoch."""
    return [float(re.findall(r"(?<!val_)loss: ([0-9.]+)", epoch)[-1])
            for epoch in out.split("Epoch ")[1:]]


def test_train_a_translator_from_an_architecture(capsys, presets, tmp_path):
    # Six pairs are one batch: each epoch is one step on it, so the second epoch's loss (after
    # one update) is below the first's.
    output = tmp_path / "translator"
    code, out, err = run(capsys, "train", "seq2seq_lm", "--data", presets / "pairs.tsv",
                         "--source-column", "zh", "--target-column", "en", "--preset",
                         presets / "seq2seq_arch", "--output", output, "--epochs", 2,
                         "--sequence-length", 8, "--tokenizer", "character")
    assert code == 0, err
    assert "saved a Seq2SeqLM preset" in out and os.path.isfile(output / "task.json")
    losses = _epoch_losses(out)
    assert len(losses) == 2 and losses[1] < losses[0], out
    from keras_unitscale.models.seq2seq_lm import Seq2SeqLM
    from keras_unitscale.presets import load_preset

    task = load_preset(Seq2SeqLM, output)  # tokenizers built from each side of the data
    assert set(task.preprocessor.tokenizer.get_vocabulary()) >= set("".join(ZH))
    assert set(task.preprocessor.decoder_tokenizer.get_vocabulary()) >= set("".join(EN)) - {" "}


def test_fine_tune_a_task_preset_keeps_its_tokenizer_and_label_names(capsys, tmp_path):
    """From a preset of the same task: its preprocessor and its label order are kept (nothing
    rebuilt from the new data, whose characters and sorted label names differ), and training
    starts from its weights: one step moves them, but they stay close (a fresh initialisation
    would be uncorrelated with them)."""
    import keras
    import numpy as np

    from keras_unitscale.models.backbones import LSTMBackbone
    from keras_unitscale.models.text_classifier import TextClassifier
    from keras_unitscale.preprocessors import TextClassifierPreprocessor
    from keras_unitscale.presets import load_preset, read_metadata, save_preset
    from keras_unitscale.tokenizers import CharacterTokenizer

    # Characters, not jieba: tracing jieba's segmentation for `fit` on TensorFlow costs ~10 s.
    preprocessor = TextClassifierPreprocessor(CharacterTokenizer.from_corpus(ZH), 8)
    source = tmp_path / "source"
    save_preset(TextClassifier(LSTMBackbone(preprocessor.tokenizer.vocabulary_size(), 4), 2,
                               preprocessor=preprocessor),
                source, metadata={"label_names": ["yes", "no"]})
    data = tmp_path / "new.csv"
    data.write_text("text,label\n" + "".join(f"{t},{'no' if i % 2 else 'yes'}\n"
                                              for i, t in enumerate(EN)), encoding="utf-8")
    output = tmp_path / "tuned"
    code, out, err = run(capsys, "train", "text_classifier", "--data", data, "--preset", source,
                         "--output", output, "--epochs", 1, "--sequence-length", 16)
    assert code == 0, err
    assert read_metadata(output)["label_names"] == ["yes", "no"]
    before, after = load_preset(TextClassifier, source), load_preset(TextClassifier, output)
    assert after.preprocessor.tokenizer.get_vocabulary() == (
        before.preprocessor.tokenizer.get_vocabulary())
    assert after.preprocessor.sequence_length == 8
    flat = [np.concatenate([keras.ops.convert_to_numpy(w).ravel() for w in task.weights])
            for task in (before, after)]
    assert not np.array_equal(*flat)
    assert np.corrcoef(*flat)[0, 1] > 0.8, np.corrcoef(*flat)[0, 1]


def test_evaluate_a_translator_on_named_columns(capsys, presets):
    code, out, err = run(capsys, "evaluate", presets / "seq2seq_lm", "--data",
                         presets / "pairs.tsv", "--source-column", "zh", "--target-column", "en")
    assert code == 0, err
    assert "loss: " in out


def test_errors_are_one_readable_line(capsys, presets, tmp_path):
    (tmp_path / "out" / "1").mkdir(parents=True)
    cases = [
        (["predict", "zh_sentimint_lstm", "x"], "did you mean 'zh_sentiment_lstm'"),
        (["predict", presets / "causal_lm", "x"], "use `keras-unitscale generate`"),
        (["generate", presets / "lstm_arch", "x"], "holds only a backbone"),
        (["export", presets / "classifier", tmp_path / "out"], "pass --overwrite"),
        (["evaluate", presets / "classifier", "--data", tmp_path / "nothing.csv"],
         "no such file"),
        (["train", "text_classifier", "--data", presets / "reviews.csv", "--preset",
          presets / "lstm_arch", "--output", presets], "not empty"),
        (["train", "causal_lm", "--data", presets / "lines.txt", "--preset",
          presets / "classifier", "--output", tmp_path / "lm"],
         f"--preset {presets / 'classifier'} is a TextClassifier preset, not a CausalLM one"),
    ]
    for argv, expected in cases:
        code, out, err = run(capsys, *argv)
        assert code == 1 and not out
        *progress, error = err.splitlines()  # progress lines may come first ("loading ...")
        assert error.startswith("keras-unitscale: error: ") and expected in error, err
        assert all(re.fullmatch(r"keras-unitscale: .+ \.\.\.", line) for line in progress), err


def test_export_writes_a_version_for_tf_serving(capsys, presets, tmp_path):
    code, out, err = run(capsys, "export", presets / "classifier", tmp_path, "--version", 3)
    assert code == 0, err
    assert os.path.isfile(tmp_path / "3" / "saved_model.pb")
    assert out.strip().endswith("(signatures: serving_default, token_ids)")
    code, _, err = run(capsys, "export", presets / "classifier", tmp_path, "--version", 3)
    assert code == 1 and "3 exists: pass --overwrite" in err
    code, _, err = run(capsys, "export", presets / "classifier", tmp_path, "--version", 3,
                       "--overwrite")
    assert code == 0, err


def test_usage_errors_exit_with_2(capsys):
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args(["train", "image_classifier", "--data", "x.csv"])
    assert exit.value.code == 2
    assert "keras-unitscale train: error: argument task" in capsys.readouterr().err


def _installed_command():
    script = os.path.join(os.path.dirname(sys.executable), "keras-unitscale")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "keras_unitscale.cli"]


# The installed entry point in a fresh process: what a user types. The commands' behaviour is
# tested in-process above; these check the script, its imports and its exit status.
SUBPROCESS_RUNS = {
    "presets": (lambda p, t: ["presets"], "zh_sentiment_lstm"),
    "predict": (lambda p, t: ["predict", p / "classifier", ZH[0]], ZH[0]),
}


# Listing the presets reads files only: no Keras backend at work, so one pass runs it.
ONE_PASS = {"presets"}


@pytest.mark.parametrize("command", [
    pytest.param(c, marks=pytest.mark.backend_independent) if c in ONE_PASS else c
    for c in SUBPROCESS_RUNS
])
def test_the_installed_command_runs(presets, tmp_path, command):
    argv, expected = SUBPROCESS_RUNS[command]
    # The libraries' log level as a user has it (unset): the command itself keeps TensorFlow's
    # and XLA's log lines off stderr (the suite's conftest sets TF_CPP_MIN_LOG_LEVEL=3).
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        _installed_command() + [str(a) for a in argv(presets, tmp_path)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() and expected in result.stdout, result.stdout[-3000:]
    if command == "predict":  # a model loaded: Keras, TensorFlow and XLA at work
        progress = f"keras-unitscale: loading {presets / 'classifier'} ..."
        assert result.stderr.splitlines() == [progress], result.stderr[-3000:]
