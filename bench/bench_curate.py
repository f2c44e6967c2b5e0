"""curate_images on real photos: does it find the images we broke, and does leaving them out
help training?

    .venv/bin/python bench/bench_curate.py [--shared ../shared/data] [--work /tmp/curate-bench]
        [--only labels,ontopic,train] [--epochs 8] [--noise 0.1] [--seed 0]

labels:  the mountain/forest photos with --noise of each class moved to the other class (fixed
         seed); precision and recall of `suspect_label` against the moved files, with
         MobileNet-0.25 ImageNet features (the shared offline weights) and with `pixels`
         thumbnails; seconds per 1,000 images (features computed, cache empty).
ontopic: the 200 ImageNet sample photos mixed into a "mountain" folder of 300 mountain photos,
         checked with the shared MobileNetV2 TFLite classifier; precision and recall of
         `off_topic` against the ImageNet photos; seconds per 1,000 images.
train:   validation accuracy on 20% clean held-out photos of small_cnn and mobilenet_transfer
         trained on the noisy set, with and without the suspect images (through the real
         train_classifier flow).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MOUNTAIN_CLASSES = ["alp", "volcano", "valley", "cliff", "promontory", "lakeside", "geyser"]


def unpack(shared: Path, work: Path, name: str) -> Path:
    marker = work / f".{name}.done"
    if not marker.exists():
        work.mkdir(parents=True, exist_ok=True)
        with tarfile.open(shared / f"{name}.tar.gz") as tar:
            tar.extractall(work, filter="data")
        marker.touch()
    return work


def noisy_split(photos: Path, out: Path, noise: float, seed: int) -> tuple[Path, Path, set[str]]:
    """out/noisy/<class>/ (train share, `noise` of each class moved to the other) and
    out/heldout/<class>/ (20% clean); returns both and the moved files' paths."""
    rng = random.Random(seed)
    noisy, heldout, moved = out / "noisy", out / "heldout", set()
    if out.exists():
        shutil.rmtree(out)
    classes = sorted(p.name for p in photos.iterdir() if p.is_dir())
    for cls in classes:
        files = sorted((photos / cls).iterdir())
        rng.shuffle(files)
        cut = len(files) // 5
        for f in files[:cut]:
            (heldout / cls).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, heldout / cls / f.name)
        train = files[cut:]
        flip = set(rng.sample(range(len(train)), round(noise * len(train))))
        for i, f in enumerate(train):
            label = next(c for c in classes if c != cls) if i in flip else cls
            (noisy / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, noisy / label / f.name)
            if i in flip:
                moved.add((noisy / label / f.name).as_posix())
    return noisy, heldout, moved


def score(flagged: set[str], truth: set[str]) -> str:
    hits = len(flagged & truth)
    precision = hits / len(flagged) if flagged else float("nan")
    recall = hits / len(truth)
    counts = f"{hits}/{len(truth)}, {len(flagged)} flagged"
    return f"precision {precision:.3f}, recall {recall:.3f} ({counts})"


def bench_labels(args, noisy: Path, moved: set[str]) -> dict[str, set[str]]:
    from tasks.curate.features import FeatureSpec
    from tasks.curate.tasks import check_label_issues, list_images

    images = list_images(noisy, None)
    weights = str(args.shared / "weights" / "mobilenet_2_5_224_tf_no_top.h5")
    found = {}
    for name, spec in {
        "mobilenet-0.25 (ImageNet)": FeatureSpec("mobilenet", weights, 0.25, 224),
        "pixels 8x8": FeatureSpec("pixels", None, 0.25, 32),
    }.items():
        cache = args.work / "feature-cache" / name.split()[0]
        shutil.rmtree(cache, ignore_errors=True)
        start = time.perf_counter()
        rows = check_label_issues.fn(images, spec, str(cache), 5, args.seed, 64, "bench")
        seconds = time.perf_counter() - start
        flagged = {r["path"] for r in rows if r["verdict"] == "suspect_label"}
        found[name] = flagged
        print(f"| suspect_label, {name} | {score(flagged, moved)} | "
              f"{1000 * seconds / len(images):.1f} s |", flush=True)  # fmt: skip
    return found


def bench_ontopic(args) -> None:
    from tasks.curate.tasks import check_on_topic, list_images
    from tasks.predict.spec import resolve_model

    unpack(args.shared, args.work, "imagenet-samples-200")
    folder = args.work / "ontopic"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "mountain").mkdir(parents=True)
    mountains = sorted((args.work / "mountain-forest" / "train" / "mountain").iterdir())
    for f in random.Random(args.seed).sample(mountains, 300):
        shutil.copy(f, folder / "mountain" / f.name)
    imagenet = set()
    for f in sorted((args.work / "imagenet-samples").iterdir()):
        shutil.copy(f, folder / "mountain" / f"imagenet-{f.name}")
        imagenet.add((folder / "mountain" / f"imagenet-{f.name}").as_posix())
    spec = resolve_model(str(args.shared / "weights" / "tf2_mobilenet_v2_1.0_224_ptq.tflite"))
    images = list_images(folder, None)
    start = time.perf_counter()
    rows = check_on_topic.fn(images, spec, {"mountain": MOUNTAIN_CLASSES}, 5, 32, "bench")
    seconds = time.perf_counter() - start
    flagged = {r["path"] for r in rows if r["verdict"] == "off_topic"}
    print(f"| off_topic, MobileNetV2 TFLite, top-5 | {score(flagged, imagenet)} | "
          f"{1000 * seconds / len(images):.1f} s |", flush=True)  # fmt: skip


def bench_train(args, noisy: Path, heldout: Path, flagged: set[str]) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows.train_classifier import train_classifier

    def dataset(name: str, drop: set[str]) -> Path:
        root = args.work / "datasets" / name
        shutil.rmtree(root, ignore_errors=True)
        for f in noisy.rglob("*.jpg"):
            if f.as_posix() not in drop:
                (root / "train" / f.parent.name).mkdir(parents=True, exist_ok=True)
                os.link(f, root / "train" / f.parent.name / f.name)
        shutil.copytree(heldout, root / "val", copy_function=os.link)
        return root

    weights = str(args.shared / "weights" / "mobilenet_2_5_224_tf_no_top.h5")
    models = {
        "small_cnn": {"model": "small_cnn", "epochs": args.epochs, "image_size": 96},
        "mobilenet_transfer": {"model": "mobilenet_transfer", "epochs": max(3, args.epochs // 2),
                               "image_size": 128, "weights": weights},
    }  # fmt: skip
    with prefect_test_harness(server_startup_timeout=120):
        for model, options in models.items():
            results = {}
            for variant, drop in {"noisy": set(), "noisy minus suspect_label": flagged}.items():
                result = train_classifier(
                    params={**options, "dataset_dir": str(dataset(variant.split()[-1], drop)),
                            "data_dir": str(args.work / "data"), "seed": args.seed},
                )  # fmt: skip
                results[variant] = result.best_val_accuracy
            print(f"| {model} | " + " | ".join(f"{v:.4f}" for v in results.values()) + " |",
                  flush=True)  # fmt: skip


def main() -> None:
    here = Path(__file__).resolve()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=here.parents[2] / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("/tmp/curate-bench"))
    parser.add_argument("--only", default="labels,ontopic,train")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    only = set(args.only.split(","))
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    print(
        "CPU:",
        next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if "Model name" in ln), "?"),
    )
    unpack(args.shared, args.work, "mountain-forest-train")
    noisy, heldout, moved = noisy_split(
        args.work / "mountain-forest" / "train", args.work / "split", args.noise, args.seed
    )
    total = sum(1 for _ in noisy.rglob("*.jpg"))
    print(f"{len(moved)} of {total} training photos moved to the other class")
    found = {}
    if "labels" in only or "train" in only:
        print("| check | result | per 1,000 images |\n|---|---|---|")
        found = bench_labels(args, noisy, moved)
    if "ontopic" in only:
        bench_ontopic(args)
    if "train" in only:
        print("\n| model | noisy | noisy minus suspect_label |\n|---|---|---|")
        bench_train(args, noisy, heldout, found["mobilenet-0.25 (ImageNet)"])


if __name__ == "__main__":
    main()
