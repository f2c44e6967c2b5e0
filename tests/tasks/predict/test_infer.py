"""predict_batch's pieces: decoding, inputs, the decoding pipeline, and the three model kinds."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from storage.errors import ConfigError, WeightsNotFoundError
from storage.parquet import write_table
from storage.schemas import SCRAPE_MANIFEST
from tasks.predict.engines.cache import get_predictor
from tasks.predict.images import image_batches, load_pixels
from tasks.predict.inputs import collect_images
from tasks.predict.labels import (
    binary_ranking,
    check_targets,
    imagenet_labels,
    ranking,
    target_indices,
    target_scores,
)
from tasks.predict.preprocess import Preprocessing
from tasks.predict.spec import resolve_model
from tasks.predict.tasks import Decoding, predict_images


def make_images(folder: Path, seed: int = 0) -> dict[str, Path]:
    """A handful of pictures in different formats, modes and sizes, plus bad files."""
    rng = np.random.RandomState(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sub").mkdir(exist_ok=True)

    def pixels(h: int, w: int, c: int) -> np.ndarray:
        return rng.randint(0, 256, (h, w, c)).astype(np.uint8)

    files = {
        "rgb": folder / "rgb.jpg",
        "rgba": folder / "rgba.png",
        "gray": folder / "sub" / "gray.png",
        "palette": folder / "sub" / "palette.gif",
        "cmyk": folder / "sub" / "cmyk.jpg",
    }
    Image.fromarray(pixels(200, 300, 3)).save(files["rgb"], quality=90)
    Image.fromarray(pixels(90, 120, 4), "RGBA").save(files["rgba"])
    Image.fromarray(pixels(224, 224, 1)[..., 0], "L").save(files["gray"])
    Image.fromarray(pixels(48, 64, 3)).convert("P").save(files["palette"])
    Image.fromarray(pixels(100, 70, 4), "CMYK").save(files["cmyk"])
    return files


def make_bad_files(folder: Path) -> dict[str, Path]:
    broken = folder / "broken.jpg"
    broken.write_bytes(b"this is not a picture")
    good = folder / "rgb.jpg"
    truncated = folder / "sub" / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:400])
    (folder / "notes.txt").write_text("not an image, not picked up")
    (folder / ".hidden").mkdir(exist_ok=True)
    Image.new("RGB", (8, 8)).save(folder / ".hidden" / "skip.png")
    return {"broken": broken, "truncated": truncated}


# ---- decoding --------------------------------------------------------------------------------


def test_index_954_is_banana_and_targets_by_name_or_wnid():
    labels = imagenet_labels()
    assert len(labels) == 1000 and labels.names[954] == "banana"
    assert labels.wnids[954] == "n07753592"
    found = target_indices(labels, ["banana", "N07753592", "Granny Smith", "crane", "nope"])
    assert found["banana"] == found["N07753592"] == [954]
    assert found["Granny Smith"] == [labels.names.index("Granny_Smith")]
    assert len(found["crane"]) == 2  # the bird and the machine
    assert found["nope"] == []


def test_unknown_target_is_a_config_error_with_a_hint():
    with pytest.raises(ConfigError, match=r"'bananna' is not a class.*did you mean banana"):
        check_targets(imagenet_labels(), ["banana", "bananna"])


def test_targets_count_within_rank_and_sum_their_probability():
    probs = np.array(
        [
            [0.1, 0.6, 0.3, 0.0],  # target 2 is second
            [0.7, 0.0, 0.0, 0.3],  # target 2 ties at 0 with index 1: never a hit
        ],
        dtype=np.float32,
    )
    order = ranking(probs)
    assert order[:, 0].tolist() == [1, 0]
    rows2, _ = target_scores(probs, order, [2], within=2)
    assert rows2.tolist() == [[False, True], [False, False]]  # the rank-2 row of image 0
    rows1, _ = target_scores(probs, order, [2], within=1)
    assert not rows1.any()
    rows3, p = target_scores(probs, order, [2, 3], within=3)
    assert rows3.tolist() == [[False, True, False], [False, True, False]]
    np.testing.assert_allclose(p, [0.3, 0.3])


def test_binary_output_becomes_a_class_with_the_threshold():
    probs, order = binary_ranking(np.array([[0.2], [0.6], [0.9]]), threshold=0.7)
    assert order[:, 0].tolist() == [0, 0, 1]
    np.testing.assert_allclose(probs[:, 1], [0.2, 0.6, 0.9])
    _, order = binary_ranking(np.array([[0.6]]), threshold=0.5)
    assert order[0, 0] == 1


# ---- inputs ------------------------------------------------------------------------------------


def test_folders_are_searched_recursively_and_bad_paths_rejected(tmp_path):
    files = make_images(tmp_path / "in")
    bad = make_bad_files(tmp_path / "in")
    found = collect_images([str(tmp_path / "in")])
    expected = {p.resolve().as_posix() for p in [*files.values(), *bad.values()]}
    assert set(found) == expected  # no .txt, nothing hidden
    assert all(Path(p).is_absolute() for p in found)
    # A named file is taken whatever its suffix; repeats are dropped.
    notes = str(tmp_path / "in" / "notes.txt")
    assert collect_images([notes, notes, str(files["rgb"])]) == [
        Path(notes).as_posix(),
        files["rgb"].as_posix(),
    ]
    with pytest.raises(ConfigError, match="does not exist"):
        collect_images([str(tmp_path / "nowhere")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no images found"):
        collect_images([str(tmp_path / "empty")])
    with pytest.raises(ConfigError, match="nothing to predict"):
        collect_images([])


def test_a_folder_link_loop_is_not_entered_and_a_linked_image_is_listed(tmp_path):
    folder = tmp_path / "in"
    files = make_images(folder)
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # in/loop -> in
    (folder / "alias.png").symlink_to(files["rgb"])
    (folder / "gone.png").symlink_to(tmp_path / "missing.png")  # a dangling link: no file
    found = collect_images([str(folder)])
    assert found == sorted(found)
    assert len(found) == len(set(found)) == len(files) + 1
    assert (folder / "alias.png").as_posix() in found
    assert not any("/loop/" in p or p.endswith("gone.png") for p in found)


def test_dataset_split_and_scrape_run_inputs(tmp_path, data_dir):
    for cls in ("cat", "dog"):
        make_images(tmp_path / "ds" / "val" / cls)
    found = collect_images([], dataset_dir=str(tmp_path / "ds"), split="val")
    assert len(found) == 10 and any("/val/dog/sub/cmyk.jpg" in p for p in found)
    with pytest.raises(ConfigError, match="prepared dataset"):
        collect_images([], dataset_dir=str(tmp_path / "ds"), split="test")

    def row(status: str, path: str | None) -> dict:
        fields = {f.name: None for f in SCRAPE_MANIFEST}
        fields |= {"run_id": "s1", "page_url": "http://x/", "url": f"http://x/{path}"}
        return fields | {"label": "cat", "status": status, "path": path}

    rows = [row("ok", "raw/cat/a.jpg"), row("ok", "/abs/b.png"), row("http_error", None)]
    write_table("scrape_manifest", rows, run_id="s1", data_dir=data_dir)
    found = collect_images([], scrape_run="s1", data_dir=str(data_dir))
    assert found == [(data_dir / "raw/cat/a.jpg").as_posix(), "/abs/b.png"]
    with pytest.raises(ConfigError, match="no scrape_manifest rows"):
        collect_images([], scrape_run="other", data_dir=str(data_dir))


# ---- the decoding pipeline ---------------------------------------------------------------------


def test_pipeline_pixels_equal_load_img_and_bad_files_become_statuses(tmp_path):
    files = make_images(tmp_path)
    bad = make_bad_files(tmp_path)
    paths = [str(p) for p in files.values()] + [str(bad["broken"]), str(bad["truncated"])]
    paths.append(str(tmp_path / "vanished.png"))
    size = (30, 40)
    got = [
        (pixels, status, error)
        for batch in image_batches(paths, size, batch_size=3)
        for pixels, status, error in zip(*(t.numpy() for t in batch), strict=True)
    ]
    assert len(got) == len(paths)
    for path, (pixels, status, _) in zip(paths[:5], got, strict=False):
        classic = keras.utils.img_to_array(keras.utils.load_img(path, target_size=size))
        assert status == 0 and pixels.shape == (30, 40, 3)
        np.testing.assert_array_equal(pixels, classic)  # nearest resize, every mode -> RGB
    assert [s for _, s, _ in got[5:]] == [1, 1, 2]  # corrupt, corrupt, missing
    assert b"not an image in an accepted format" in got[5][2] and got[6][2]


def test_pipeline_runs_without_tf_data_autotuning(tmp_path):
    """Its autotuning thread made the end of some 1,000-image shards wait 1.1 s
    (bench/predict_shards.py); the pipeline decodes ahead at a fixed depth instead."""
    files = make_images(tmp_path)
    batches = image_batches([str(p) for p in files.values()], (8, 8), batch_size=2)
    assert batches.options().autotune.enabled is False
    assert sum(int(b[1].shape[0]) for b in batches) == len(files)  # every image, once


# ---- models ------------------------------------------------------------------------------------


def tiny_tflite(path: Path, classes: int, quantized: bool) -> keras.Model:
    """Convert a 2-layer Keras model (raw pixels in, softmax out) to a .tflite file."""
    keras.utils.set_random_seed(classes)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantized:
        data = np.random.RandomState(0).randint(0, 256, (16, 8, 8, 3)).astype(np.float32)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([d[None]] for d in data)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    path.write_bytes(converter.convert())
    return model


@pytest.mark.parametrize(("classes", "quantized"), [(1000, False), (1001, True)])
def test_tflite_classifier_float_and_uint8_inputs(tmp_path, classes, quantized):
    model = tiny_tflite(tmp_path / "tiny.tflite", classes, quantized)
    images = make_images(tmp_path / "img")
    spec = resolve_model(str(tmp_path / "tiny.tflite"))
    assert spec.kind == "tflite" and spec.image_size == (8, 8)
    assert spec.label_offset == classes - 1000 and spec.labels.names[954] == "banana"
    # An ImageNet classifier: the standard evaluation protocol unless overridden.
    assert spec.preprocessing.describe().startswith("crop(0.875)/bilinear; ")
    paths = [str(p) for p in images.values()]
    pixels = np.stack([load_pixels(p, (8, 8), spec.preprocessing) for p in paths])
    expected = model.predict(pixels, verbose=0)[:, classes - 1000 :]
    got = get_predictor(spec)(pixels)
    assert got.shape == (5, 1000) and got.dtype == np.float32
    # uint8 output steps are 1/256; float is exact up to rounding.
    np.testing.assert_allclose(got, expected, atol=0.01 if quantized else 1e-5)
    rows = [
        r
        for batch in predict_images(
            paths, spec, batch_size=2, run_id="r", decoding=Decoding(top_k=2)
        )
        for r in batch
    ]
    assert len(rows) == 10
    first = [r for r in rows if r["rank"] == 1]
    assert [r["label_index"] for r in first] == [int(i) for i in np.argmax(got, axis=1)]
    assert first[0]["label"] == imagenet_labels().names[first[0]["label_index"]]


def trained_binary_model(model_dir: Path, epochs: int = 30) -> keras.Model:
    """Fit a tiny sigmoid model on reddish vs bluish 16x16 pictures; write it with its card."""
    keras.utils.set_random_seed(3)
    rng = np.random.RandomState(3)
    x = rng.randint(0, 100, (32, 16, 16, 3)).astype(np.float32)
    y = np.arange(32) % 2  # 1 = red
    x[y == 1, :, :, 0] += 150
    x[y == 0, :, :, 2] += 150
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.1), "binary_crossentropy")
    if epochs:
        model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    model_dir.mkdir(parents=True)
    model.save(model_dir / "best.keras")
    card = {
        "run_id": model_dir.name,
        "model": "tiny_cnn",
        "class_names": ["blue", "red"],
        "image_size": [16, 16],
        "label_mode": "binary",
        "num_classes": 2,
    }
    (model_dir / "model_card.json").write_text(json.dumps(card))
    return model


def test_trained_binary_model_with_its_card_and_threshold(tmp_path):
    model = trained_binary_model(tmp_path / "models" / "t1")
    paths = []
    for name, color in [("red", (230, 20, 20)), ("blue", (20, 20, 230)), ("mid", (120, 0, 120))]:
        paths.append(str(tmp_path / f"{name}.png"))
        Image.new("RGB", (40, 30), color).save(paths[-1])
    spec = resolve_model(str(tmp_path / "models" / "t1"))  # the folder finds best.keras
    assert spec.kind == "keras" and spec.binary and spec.labels.names == ("blue", "red")
    p = model.predict(
        np.stack([load_pixels(q, (16, 16), Preprocessing("stretch", "bilinear")) for q in paths]),
        verbose=0,
    )
    assert p[0, 0] > 0.5 > p[1, 0]  # it learned the colors

    def top1(threshold: float) -> list[tuple[str, float]]:
        decoding = Decoding(top_k=3, target_idx=(1,), within=1, threshold=threshold)
        rows = next(predict_images(paths, spec, batch_size=8, run_id="r", decoding=decoding))
        assert len(rows) == 6  # two classes: top_k is capped
        # Only the row whose class is the target ("red") and within rank 1 is marked.
        assert all(r["is_target"] == (r["rank"] == 1 and r["label"] == "red") for r in rows)
        return [(r["label"], r["probability"], r["is_target"]) for r in rows if r["rank"] == 1]

    got = top1(0.5)
    assert [label for label, _, _ in got[:2]] == ["red", "blue"]
    assert got[0][1] == pytest.approx(p[0, 0], abs=1e-5) and got[0][2] is True
    assert got[1][1] == pytest.approx(1 - p[1, 0], abs=1e-5) and got[1][2] is False
    # The threshold digitizes: just above p, "red" becomes "blue" (with probability 1 - p).
    above = float(p[0, 0]) + 1e-3
    assert top1(above)[0][:2] == ("blue", pytest.approx(1 - p[0, 0], abs=1e-5))
    assert top1(0.0)[1][0] == "red"


def test_model_card_must_match_the_model(tmp_path):
    trained_binary_model(tmp_path / "m", epochs=0)
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    card |= {"label_mode": "int", "class_names": ["a", "b", "c"], "num_classes": 3}
    (tmp_path / "m" / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ConfigError, match="1 outputs but its model card says 3"):
        get_predictor(resolve_model(str(tmp_path / "m" / "best.keras")))
    (tmp_path / "m" / "model_card.json").unlink()
    with pytest.raises(ConfigError, match=r"no model_card\.json"):
        resolve_model(str(tmp_path / "m"))
    with pytest.raises(ConfigError, match="mixed_precision applies to ImageNet backbones"):
        resolve_model(str(tmp_path / "m"), mixed_precision=True)
    with pytest.raises(ConfigError, match="neither a backbone"):
        resolve_model("resnet5O")


def test_missing_imagenet_weights_name_the_file_and_the_option(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("PIXELPIPE_OFFLINE")  # this test tries Keras's download (to loopback)
    (tmp_path / "keras").mkdir()
    # Make the Keras download fail at once, also on a machine with internet: a proxy on a
    # closed loopback port (urllib caches its opener, so drop the cached one).
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setattr(urllib.request, "_opener", None)
    with pytest.raises(WeightsNotFoundError) as error:
        resolve_model("resnet50", "imagenet")
    message = str(error.value)
    assert "could not be downloaded" in message  # Keras's own download was tried
    assert "resnet50_weights_tf_dim_ordering_tf_kernels.h5" in message
    assert "2cb95161c43110f7111970584f804107" in message
    assert str(tmp_path / "keras" / "models") in message and "--weights PATH" in message
    assert isinstance(error.value, FileNotFoundError)
    assert not list((tmp_path / "keras" / "models").glob("*.h5"))
    with pytest.raises(WeightsNotFoundError, match=r"weights file .*missing\.h5 does not exist"):
        resolve_model("mobilenet_v2", str(tmp_path / "missing.h5"))


def test_mobilenet_v2_by_name_in_mixed_bfloat16(tmp_path):
    spec = resolve_model("mobilenet_v2", "none", mixed_precision=True)
    assert spec.identity == "mobilenet_v2@random(seed=0)+mixed_bfloat16"
    images = make_images(tmp_path)
    pixels = np.stack([load_pixels(str(p), spec.image_size) for p in images.values()])
    probs = get_predictor(spec)(pixels)
    assert probs.dtype == np.float32 and probs.shape == (5, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)  # softmax in float32
    assert keras.mixed_precision.global_policy().name == "float32"  # policy restored
