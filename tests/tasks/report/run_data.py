"""A complete fake run written through storage/ (every table, a model card, images), for the
report tests and write_report's flow test."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from storage.layout import Layout
from storage.parquet import write_table
from storage.schemas import TABLES

RUN = "20261128-120000-abc123"
TRAINED = "small_cnn"
LABELS = ("mountain", "forest")
EVIL = "<script>alert(1)</script>"


def _image(path: Path, colour: tuple[int, int, int], seed: int) -> str:
    """A 32x32 PNG: a solid colour with a noisy diagonal stripe (so kernels have edges)."""
    rng = np.random.default_rng(seed)
    pixels = np.empty((32, 32, 3), np.uint8)
    pixels[:] = colour
    for i in range(32):
        pixels[i, max(0, i - 3) : i + 3] = rng.integers(0, 255, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return str(path)


def _scrape_rows(root: Path) -> list[dict]:
    base = {
        "run_id": RUN,
        "http_status": 200,
        "error": None,
        "sha256": None,
        "width": 32,
        "height": 32,
        "format": "PNG",
        "bytes": 100,
        "content_type": "image/png",
        "found_in": "img",
        "fetched_at": None,
        "elapsed_s": 0.1,
    }
    rows = []
    for i, label in enumerate(LABELS):
        for j in range(2):
            path = _image(root / "raw" / label / f"{j}.png", (40 + 150 * i, 120, 60), 10 * i + j)
            rows.append(
                {
                    **base,
                    "page_url": f"http://pages.test/{label}.html",
                    "url": f"http://img.test/{label}/{j}.png",
                    "label": label,
                    "status": "ok",
                    "path": path,
                }
            )
    bad = {"label": "forest", "page_url": "http://pages.test/forest.html", "path": None}
    rows.append({**base, **bad, "url": "http://img.test/gone.png", "status": "http_error"})
    rows[-1].update(http_status=404, error=f"404 Not Found {EVIL}")
    rows.append({**base, **bad, "url": "http://img.test/forest/0-copy.png", "status": "duplicate"})
    return rows


def dataset_rows(root: Path) -> list[dict]:
    """3 train + 2 val images per class, and one corrupt source file."""
    rows = []
    for index, label in enumerate(LABELS):
        for n, split in enumerate(["train"] * 3 + ["val"] * 2):
            out = root / "datasets" / "fake" / split / label / f"{n}.png"
            rows.append(
                {
                    "run_id": RUN,
                    "dataset": "fake",
                    "path": _image(out, (40 + 150 * index, 120, 60), 100 + 10 * index + n),
                    "label": label,
                    "label_index": index,
                    "split": split,
                    "sha256": f"{index}{n}",
                    "source_url": None,
                    "source_path": f"/raw/{label}/{n}.png",
                    "status": "ok",
                    "error": None,
                    "width": 32,
                    "height": 32,
                }
            )
    rows.append(
        {
            **rows[0],
            "path": None,
            "label_index": None,
            "split": None,
            "source_path": "/raw/forest/broken.jpg",
            "label": "forest",
            "status": "corrupt",
            "error": "cannot identify image file",
        }
    )
    return rows


def _val_images(root: Path) -> dict[str, list[str]]:
    folder = root / "datasets" / "fake" / "val"
    return {label: [str(folder / label / f"{n}.png") for n in (3, 4)] for label in LABELS}


def _prediction_rows(root: Path) -> list[dict]:
    """The trained model: both forests right, one mountain called forest (3 of 4 right);
    forest at rank 1 is the target. ResNet50 also predicted two images (ImageNet labels)."""
    val = _val_images(root)
    top1 = {
        val["mountain"][0]: ("mountain", 0.9),
        val["mountain"][1]: ("forest", 0.6),
        val["forest"][0]: ("forest", 0.8),
        val["forest"][1]: ("forest", 0.7),
    }
    base = {"run_id": RUN, "error": None, "status": "ok", "preprocessing": "stretch/bilinear; raw"}
    rows = []
    for image, (label, p) in top1.items():
        other = "mountain" if label == "forest" else "forest"
        for rank, (name, prob) in enumerate([(label, p), (other, 1 - p)], start=1):
            hit = name == "forest" and rank == 1
            rows.append(
                {
                    **base,
                    "model": TRAINED,
                    "image": image,
                    "rank": rank,
                    "label": name,
                    "label_index": LABELS.index(name),
                    "probability": prob,
                    "is_target": hit,
                    "target_probability": p if label == "forest" else 1 - p,
                    "model_run": RUN,
                }
            )
    broken = {**rows[0], "image": "/nowhere/broken.png", "rank": None, "label": None}
    broken.update(label_index=None, probability=None, is_target=None, target_probability=None)
    rows.append({**broken, "status": "corrupt", "error": "cannot identify image file"})
    for image in val["mountain"]:
        rows.append({**rows[0], "model": "resnet50", "image": image, "label": "alp"})
        rows[-1]["model_run"] = None  # an ImageNet backbone has no train run
        rows[-1].update(label_index=970, probability=0.5, is_target=False, target_probability=0.0)
    return rows


def _history(root: Path) -> tuple[list[dict], list[dict]]:
    model_dir = Layout.at(root).model_dir(RUN)
    epochs = [
        (1, 0.9, 0.55, 0.8, 0.50, False),
        (2, 0.6, 0.70, 0.5, 0.75, True),
        (3, 0.4, 0.85, 0.6, 0.70, False),
    ]
    epoch_rows = [
        {
            "run_id": RUN,
            "model": TRAINED,
            "epoch": e,
            "loss": loss,
            "accuracy": acc,
            "val_loss": vl,
            "val_accuracy": va,
            "is_best": best,
            "checkpoint_path": str(model_dir / "best.keras"),
            "seconds": 1.5,
            "learning_rate": 0.001,
            "finished_at": None,
        }
        for e, loss, acc, vl, va, best in epochs
    ]
    batch_rows = [
        {
            "run_id": RUN,
            "model": TRAINED,
            "epoch": e,
            "batch": b,
            "loss": 1.0 / (e + b),
            "accuracy": 0.4 + 0.1 * e + 0.02 * b,
        }
        for e in (1, 2, 3)
        for b in range(4)
    ]
    return epoch_rows, batch_rows


def card_dict(root: Path, augmentation: dict | None) -> dict:
    return {
        "run_id": RUN,
        "model": TRAINED,
        "class_names": list(LABELS),
        "image_size": [32, 32],
        "label_mode": "categorical",
        "num_classes": 2,
        "best_epoch": 2,
        "best_val_accuracy": 0.75,
        "best_val_loss": 0.5,
        "evaluated_val_accuracy": 0.7500000298023224,  # float32 noise, as Keras reports it
        "dataset_dir": str(root / "datasets" / "fake"),
        "params": {"epochs": 3, "batch_size": 4, "augmentation": augmentation},
        "versions": {"keras": "3", "tensorflow": "2.21"},
    }


def _save_tiny_model(path: Path) -> None:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv_a"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.save(path)


def write(table: str, rows: list[dict], root: Path) -> None:
    """write_table, with optional columns the report does not read (other stages add some)
    filled with nulls."""
    optional = [f.name for f in TABLES[table] if f.nullable]
    rows = [{**dict.fromkeys(optional), **row} for row in rows]
    write_table(table, rows, run_id=RUN, data_dir=root)


def make_run(root: Path, *, model: bool = False, augmentation: dict | None = None) -> str:
    """A complete fake run written through storage/: every table, a model card, images."""
    write("scrape_manifest", _scrape_rows(root), root)
    write("dataset_manifest", dataset_rows(root), root)
    epoch_rows, batch_rows = _history(root)
    write("epoch_history", epoch_rows, root)
    write("batch_history", batch_rows, root)
    write("predictions", _prediction_rows(root), root)
    model_dir = Layout.ensure(Layout.at(root).model_dir(RUN))
    (model_dir / "model_card.json").write_text(json.dumps(card_dict(root, augmentation)))
    if model:
        _save_tiny_model(model_dir / "best.keras")
    return RUN
