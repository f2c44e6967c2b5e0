"""Numbers and names for people: a trained model's predictions name no target nobody gave,
corrupt inputs are named, metrics are rounded, the training bar carries loss and accuracy."""

from __future__ import annotations

from io import StringIO

from rich.console import Console
from typer.testing import CliRunner

from flows.cli import commands as cli
from flows.cli.output import num, train_summary
from flows.cli.progress import BarSink, new_bar
from flows.train_classifier import TrainResult
from tasks.runtime import set_progress_sink
from tests.flows.test_predict_batch import tiny_softmax_model
from tests.http_server import picture


def test_a_trained_model_names_no_default_target_and_names_corrupt_inputs(
    prefect_harness, data_dir, tmp_path
):
    tiny_softmax_model(data_dir / "models" / "train-1", ["forest", "mountain", "sea"])
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        (inputs / f"good-{i}.png").write_bytes(picture(i, fmt="PNG"))
    for i in range(5):
        (inputs / f"broken-{i}.jpg").write_bytes(b"not a picture at all")
    args = ["predict", "--model", "train-1", "--inputs", str(inputs), "--run-id", "p1"]
    out = CliRunner().invoke(cli.app, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "8 images: 3 ok, 5 corrupt, 0 missing;" in out.output
    assert "target" not in out.output and "banana" not in out.output
    assert "  corrupt: broken-0.jpg" in out.output
    assert "  and 2 more (pixelpipe show predictions --run-id ...)" in out.output

    given = CliRunner().invoke(cli.app, [*args, "--targets", "sea"], catch_exceptions=False)
    assert "with a target (sea)" in given.output


def test_metrics_are_rounded_for_display():
    result = TrainResult(
        run_id="r", model="small_cnn", model_path="m", model_card_path="c", history_path="h",
        batch_history_path="b", best_epoch=3, best_val_accuracy=0.9305555820465088,
        best_val_loss=0.2, epochs_run=3, evaluated_val_accuracy=None, evaluated_val_loss=None,
        class_names=["a", "b"], dataset_dir="d",
    )  # fmt: skip
    assert "val_accuracy 0.931 (evaluated n/a)" in train_summary(result)[0]
    assert num(0.5) == "0.500"


def test_the_training_bar_shows_live_loss_and_accuracy(data_dir):
    """Keras's running loss and accuracy reach the batch bar through the history callback."""
    from tasks.train.history import HistoryRecorder
    from tasks.train.spec import TrainSpec

    spec = TrainSpec(
        run_id="r1", data_dir=str(data_dir), dataset_dir=str(data_dir), model="small_cnn",
        class_names=["a", "b"], image_size=(8, 8), epochs=2,
    )  # fmt: skip
    recorder = HistoryRecorder(spec, total_epochs=2)
    recorder.set_params({"steps": 4})
    bar = new_bar(Console(file=StringIO(), force_terminal=True, width=120))
    set_progress_sink(BarSink(bar))
    try:
        recorder.on_epoch_begin(0)
        recorder.on_train_batch_end(0, {"loss": 0.693147, "accuracy": 0.5})
        shown = [task.description for task in bar.tasks]
        assert "epoch 1/2 loss 0.6931 accuracy 0.5000" in shown, shown
    finally:
        set_progress_sink(None)
