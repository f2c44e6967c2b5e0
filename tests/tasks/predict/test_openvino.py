"""predict_batch's OpenVINO backend: conversion equal to Keras, bf16 and int8, the int8 accuracy
check, the IR cache, the flow's rows, and the install hint when OpenVINO is missing."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from flows.params import PredictParams
from storage.errors import AccuracyDropError
from storage.parquet import read_table
from tasks.predict.engines.cache import get_predictor
from tasks.predict.images import load_pixels
from tasks.predict.preprocess import Preprocessing
from tasks.predict.spec import resolve_model

needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None or importlib.util.find_spec("nncf") is None,
    reason='OpenVINO/NNCF not installed: pip install -e ".[openvino]" to run these tests',
)
COLORS = {"blue": (0, 0, 1), "green": (0, 1, 0), "red": (1, 0, 0)}


def color_dataset(root: Path, train: int = 12, val: int = 6, size: int = 16) -> Path:
    """Noisy square pictures, one dominant color per class, in train/ and val/ folders."""
    rng = np.random.RandomState(7)
    for split, n in (("train", train), ("val", val)):
        for name, rgb in COLORS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                x = rng.randint(0, 90, (size, size, 3)) + 150 * np.array(rgb)
                Image.fromarray(x.astype(np.uint8)).save(root / split / name / f"{i}.png")
    return root


def trained_color_model(model_dir: Path, dataset: Path) -> keras.Model:
    """A tiny softmax CNN fitted on the color dataset, saved as best.keras with its card."""
    keras.utils.set_random_seed(5)
    paths = sorted((dataset / "train").rglob("*.png"))
    x = np.stack(
        [load_pixels(str(p), (16, 16), Preprocessing("stretch", "bilinear")) for p in paths]
    )
    y = np.array([sorted(COLORS).index(p.parent.name) for p in paths])
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=40, batch_size=36, verbose=0)
    model_dir.mkdir(parents=True)
    model.save(model_dir / "best.keras")
    card = {
        "model": "color_cnn",
        "class_names": sorted(COLORS),
        "image_size": [16, 16],
        "label_mode": "int",
        "dataset_dir": str(dataset),
    }
    (model_dir / "model_card.json").write_text(json.dumps(card))
    return model


@pytest.fixture(scope="module")
def color_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("ov")
    dataset = color_dataset(root / "dataset")
    model = trained_color_model(root / "models" / "color", dataset)
    val = sorted(str(p) for p in (dataset / "val").rglob("*.png"))
    return model, root / "models" / "color" / "best.keras", val


def test_missing_openvino_fails_before_work_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    with pytest.raises(ValidationError, match=r'pip install -e "\.\[openvino\]"'):
        PredictParams(inputs=["x.jpg"], backend="openvino")
    with pytest.raises(ValidationError, match="precision applies to backend=openvino"):
        PredictParams(inputs=["x.jpg"], precision="bf16")


@needs_openvino
def test_resnet50_random_weights_64px_equals_keras_within_1e_4():
    from tasks.predict.engines.openvino import async_predictor, compile_ir, convert_keras

    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(
        weights=None, input_shape=(64, 64, 3), classifier_activation=None
    )
    preprocess = keras.applications.resnet50.preprocess_input
    x = np.random.RandomState(1).uniform(0, 255, (5, 64, 64, 3)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(model(preprocess(x.copy()))))
    predict = async_predictor(compile_ir(convert_keras(model, preprocess, (64, 64)), "fp32"), True)
    got = predict(x)
    assert got.shape == (5, 1000) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(got.sum(axis=1), 1, atol=1e-5)


@needs_openvino
def test_trained_model_fp32_equals_keras_bf16_agrees_and_the_ir_is_cached(color_model):
    from tasks.predict.engines import openvino as ovb
    from tasks.predict.engines import openvino_ir as ovir

    model, path, val = color_model
    spec = resolve_model(str(path))
    x = np.stack([load_pixels(p, (16, 16), Preprocessing("stretch", "bilinear")) for p in val])
    before = ovb.CONVERSIONS["fp32"]
    fp32_spec, info = ovir.prepare_openvino.fn(spec, "fp32", images=val)
    assert ovb.CONVERSIONS["fp32"] == before + 1 and not info.cached
    ir = Path(info.ir_path)
    assert ir.is_file() and ir.parent.parent == path.parent / "openvino"
    assert fp32_spec.identity == spec.identity + "+openvino-fp32"
    fp32 = get_predictor(fp32_spec)(x)
    np.testing.assert_allclose(fp32, model.predict(x, verbose=0), atol=1e-4)

    mtime = ir.stat().st_mtime_ns
    bf16_spec, again = ovir.prepare_openvino.fn(spec, "bf16", images=val)  # bf16: same IR
    assert again.cached and again.ir_path == info.ir_path and ir.stat().st_mtime_ns == mtime
    assert ovb.CONVERSIONS["fp32"] == before + 1  # nothing converted the second time
    bf16 = get_predictor(bf16_spec)(x)
    assert (bf16.argmax(axis=1) == fp32.argmax(axis=1)).all()
    assert (fp32.argmax(axis=1) == [sorted(COLORS).index(Path(p).parent.name) for p in val]).all()


@needs_openvino
def test_int8_reports_accuracy_and_is_refused_when_it_drops_too_much(color_model):
    from tasks.predict.engines import openvino as ovb
    from tasks.predict.engines import openvino_ir as ovir

    _, path, val = color_model
    spec = resolve_model(str(path))
    with pytest.raises(AccuracyDropError, match=r"int8 validation accuracy .* vs fp32 1\.0000"):
        # fp32 is right on every val image: int8 cannot do better, so a negative drop refuses.
        ovir.prepare_openvino.fn(spec, "int8", images=val, max_accuracy_drop=-1.0)
    quantized = ovb.CONVERSIONS["int8"]
    int8_spec, info = ovir.prepare_openvino.fn(spec, "int8", images=val, max_accuracy_drop=50)
    assert info.cached and ovb.CONVERSIONS["int8"] == quantized  # the refused IR was kept
    assert info.accuracy_fp32 == 1.0 and info.validation_images == len(val)
    assert info.calibration_images == 36 and "training images" in info.calibration
    assert info.accuracy_drop_points == pytest.approx(100 * (1.0 - info.accuracy_int8))
    assert int8_spec.identity.endswith("+openvino-int8")
    assert "int8" in Path(info.ir_path).parent.name
    probs = get_predictor(int8_spec)(
        np.stack([load_pixels(p, (16, 16), Preprocessing("stretch", "bilinear")) for p in val])
    )
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-3)


@needs_openvino
def test_flow_with_openvino_writes_the_keras_rows(prefect_harness, data_dir, color_model):
    from flows.cli.output import predict_table
    from flows.predict_batch import predict_batch

    _, path, val = color_model
    common = {"inputs": [str(Path(val[0]).parents[1])], "model": str(path), "top_k": 2}
    keras_run = predict_batch(params={**common, "run_id": "r-keras"})
    ov_run = predict_batch(params={**common, "run_id": "r-ov", "backend": "openvino"})
    assert ov_run.model == keras_run.model + "+openvino-fp32"
    assert ov_run.engine["precision"] == "fp32"
    assert keras_run.engine is None and ov_run.ok == keras_run.ok == len(val)
    a = read_table("predictions", run_id="r-keras").sort_values(["image", "rank"])
    b = read_table("predictions", run_id="r-ov").sort_values(["image", "rank"])
    assert list(a.columns) == list(b.columns) and (a.dtypes == b.dtypes).all()
    assert (b["model"] == ov_run.model).all()
    for column in ("image", "rank", "label", "label_index", "is_target", "status"):
        assert a[column].tolist() == b[column].tolist()
    np.testing.assert_allclose(b["probability"], a["probability"], atol=1e-4)

    with pytest.raises(AccuracyDropError):
        predict_batch(
            params={**common, "run_id": "r-int8", "backend": "openvino", "precision": "int8"}
            | {"max_accuracy_drop": -1.0}
        )
    assert read_table("predictions", run_id="r-int8").empty  # refused before any shard
    allowed = predict_batch(
        params={**common, "run_id": "r-int8", "backend": "openvino", "precision": "int8"}
        | {"max_accuracy_drop": 100}
    )
    assert allowed.model.endswith("+openvino-int8") and allowed.ok == len(val)
    summary = predict_table(allowed)
    assert "openvino int8: cached IR" in summary
    assert "validation accuracy fp32 1.0000 | int8 " in summary


@needs_openvino
def test_train_exports_openvino_and_predict_reuses_it(prefect_harness, data_dir, tmp_path):
    from flows.predict_batch import predict_batch
    from flows.train_classifier import train_classifier
    from tasks.predict.engines import openvino as ovb

    dataset = color_dataset(tmp_path / "ds", train=4, val=2, size=32)
    trained = train_classifier(
        params={"dataset_dir": str(dataset), "epochs": 1, "batch_size": 8, "run_id": "t-ov"}
        | {"export": ["openvino"]}
    )
    ir = Path(trained.exports["openvino"])
    assert ir.is_file() and ir.parent.parent == Path(trained.model_path).parent / "openvino"
    card = json.loads(Path(trained.model_card_path).read_text())
    assert card["exports"]["openvino"]["path"] == str(ir) and card["params"]["export"] == [
        "openvino"
    ]
    converted = ovb.CONVERSIONS["fp32"]
    result = predict_batch(
        params={"dataset_dir": str(dataset), "model": "t-ov", "backend": "openvino"}
        | {"precision": "bf16", "run_id": "p-ov"}
    )
    assert result.engine["cached"] and result.engine["ir_path"] == str(ir)
    assert ovb.CONVERSIONS["fp32"] == converted and result.ok == 6
