"""Tests for byol_tf.evaluation.results: the JSON every protocol writes, and its table."""

import pytest

from byol_tf.evaluation import results


def test_results_json_and_table(tmp_path):
    result = dict(protocol="linear", variant="augmented", dataset="imagenet2012", train_split="train",
                  eval_split="validation", train_examples=1281167, eval_examples=50000, num_classes=1000,
                  checkpoint_step=312000, workdir="gs://b/run", top1=0.7431, top5=0.916, epochs=80)
    path = results.write(result, str(tmp_path / "x" / "linear.json"))
    assert results.read(path) == result
    assert results.format_table([result, dict(result, protocol="knn", variant="", epochs=0)]) == "\n".join([
        "protocol            dataset       eval split          step    epochs  top-1  top-5",
        "linear (augmented)  imagenet2012  validation (50000)  312000  80      74.3%  91.6%",
        "knn                 imagenet2012  validation (50000)  312000  -       74.3%  91.6%",
    ])
    with pytest.raises(ValueError, match="missing keys"):
        results.write({"protocol": "linear"}, str(tmp_path / "bad.json"))
