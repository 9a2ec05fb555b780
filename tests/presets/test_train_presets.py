"""`tools/train_presets.py --quick`: the training script runs end to end in seconds."""

import json
import os

import numpy as np
from scripts import ROOT, load_script


def _script():
    return load_script("tools/train_presets.py", "train_presets")


def test_quick_run_trains_evaluates_saves_and_fills_the_card(tmp_path, capsys):
    # The way the sentiment presets are made: a search run on validation (`--no-test`, a recipe
    # setting changed with `--set`), then `--ship`, which reads the test split once.
    from keras_unitscale.models.text_classifier import TextClassifier

    script = _script()
    assert set(script.RECIPES) == set(script.TRAINED)
    search = tmp_path / "search"
    assert script.main(["zh_sentiment_lstm", "--quick", "--no-test", "--set", "dropout=0.1",
                        "--output-dir", str(search)]) == 0
    metadata = json.loads((search / "zh_sentiment_lstm" / "metadata.json").read_text("utf-8"))
    assert sorted(metadata["metrics"]) == ["val_accuracy", "val_loss"]  # no test split read
    assert "dropout 0.1" in metadata["recipe"]
    with open(os.path.join(ROOT, "docs", "presets.md"), encoding="utf-8") as f:
        assert (search / "presets.md").read_text(encoding="utf-8") == f.read()  # card untouched
    assert script.main(["zh_sentiment_lstm", "--quick", "--ship", str(search),
                        "--output-dir", str(tmp_path)]) == 0
    preset = tmp_path / "zh_sentiment_lstm"
    metadata = json.loads((preset / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["quick"] is True and metadata["training_time_s"] > 0
    assert metadata["label_names"] == ["negative", "positive"]
    assert metadata["format_version"] == 1 and metadata["parameter_count"] > 0
    card = (tmp_path / "presets.md").read_text(encoding="utf-8")
    section = card.split("<!-- metrics:zh_sentiment_lstm -->")[1].split("<!-- /metrics")[0]
    assert "test_accuracy" in section and "To be filled" not in section
    # The other cards are the copy's own, untouched (the real docs are never written).
    with open(os.path.join(ROOT, "docs", "presets.md"), encoding="utf-8") as f:
        real = f.read()
    other = "<!-- metrics:zh_reviews_gpt -->"
    assert card.split(other)[1] == real.split(other)[1]
    assert section.strip() != real.split("<!-- metrics:zh_sentiment_lstm -->")[1].split(
        "<!-- /metrics")[0].strip()  # the quick card replaced the real one in the copy
    # The card's test accuracy is the saved preset's on the quick test split: recounted from
    # its own predictions (a tiny model after one epoch cannot beat the majority class, but
    # an accuracy measured on another split or model, or mislabelled, fails here).
    from keras_unitscale.datasets import load_chinese_sentiment

    _, _, (x_test, y_test) = load_chinese_sentiment(seed=metadata["seed"])
    n = metadata["split_sizes"][2]
    classifier = TextClassifier.from_preset(str(preset))
    logits = classifier.predict(list(x_test[:n]), verbose=0)
    assert logits.shape == (n, 2) and np.all(np.isfinite(logits))
    recounted = float(np.mean(np.argmax(logits, axis=-1) == y_test[:n]))
    assert abs(metadata["metrics"]["test_accuracy"] - recounted) <= 5e-5, recounted
