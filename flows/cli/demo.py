"""`pixelpipe demo`: the whole pipeline, offline, on a generated mountain/forest gallery."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from flows.params import Params, PipelineParams

# ImageNet classes a mountain picture may plausibly get (the ResNet50 stage counts them).
IMAGENET_TARGETS = ["alp", "volcano", "valley", "cliff"]


class DemoOptions(Params):
    data_dir: str | None = Field(
        None, description="Data root; default $PIXELPIPE_DATA_DIR, else ./data"
    )
    per_class: int = Field(150, ge=8, le=5000, description="Pictures generated per class")
    image_size: int = Field(80, ge=16, le=224, description="Training image side in pixels")
    epochs: int = Field(8, ge=1, le=100, description="Training epochs")
    weights: str | None = Field(
        None,
        description="ResNet50 ImageNet weights file for the extra ImageNet stage; default: the"
        " Keras cache when it has them, else that stage is skipped",
    )
    seed: int = Field(0, description="Seed of the generated pictures and of training")


class DemoResult(BaseModel):
    run_id: str
    report_path: str
    val_accuracy: float | None
    imagenet_note: str | None = None
    seconds: float
    pipeline: dict = Field(default_factory=dict)


def imagenet_choice(weights: str | None) -> tuple[str | None, str | None]:
    """(weights for the ImageNet stage or None, the line saying why it is skipped)."""
    # deferred: CLI start-up (flows.cli imports DemoOptions from this module)
    from tasks.demo.imagenet import skipped_line
    from tasks.predict.spec import BACKBONES
    from tasks.weights import cached_weights

    if weights:
        from tasks.predict.spec import resolve_model  # deferred: CLI start-up, as above

        resolve_model("resnet50", weights)  # a wrong path: one clear error, before any work
        return weights, None
    expected = BACKBONES["resnet50"].file
    if cached_weights(expected, BACKBONES["resnet50"].md5) is not None:
        return "imagenet", None
    return None, skipped_line(expected)


def pipeline_params(
    options: DemoOptions, base_url: str, gallery, weights: str | None, notes: list[str]
):
    """The pipeline parameters of a demo run against the gallery served at `base_url`."""
    return PipelineParams(
        data_dir=options.data_dir,
        sources=[f"{label}={base_url}{page}" for label, page in gallery.first_pages.items()],
        scrape={
            "allow_private_networks": True,  # the gallery is on 127.0.0.1
            "follow_pages": gallery.pages_per_class - 1,
            "min_size": 64,  # the 56x42 thumbnails are rejected as too_small
        },
        # Curation's label check on 8x8 thumbnails: it needs no weights, and the demo's classes
        # differ in colour and layout (an ImageNet backbone is the choice for real photos).
        curation={"features": "pixels"},
        prepare={"dataset": "demo", "image_size": options.image_size, "val_fraction": 0.25},
        train={
            "model": "small_cnn",
            "epochs": options.epochs,
            "batch_size": 32,
            "seed": options.seed,
            "augmentation": {
                "rotation_range": 10,
                "zoom_range": (0.9, 1.1),
                "width_shift_range": 0.1,
                "horizontal_flip": True,
            },
        },
        predict={"split": "val", "top_k": 2},
        targets=["mountain"],
        imagenet_weights=weights,
        imagenet_targets=IMAGENET_TARGETS,
        report_title="pixelpipe demo: mountains vs forests",
        report_notes=notes,
    )


def run_demo(options: DemoOptions, echo: Callable[[str], None] = print) -> DemoResult:
    """Generate and serve the gallery, run the pipeline on it, and say where the report is."""
    # deferred: CLI start-up (the pipeline loads Prefect and TensorFlow)
    from flows.image_pipeline import image_pipeline
    from tasks.demo.gallery import GalleryServer, build_gallery

    started = time.perf_counter()
    weights, skipped = imagenet_choice(options.weights)
    if skipped:
        echo(skipped)
    with tempfile.TemporaryDirectory(prefix="pixelpipe-demo-site-") as site:
        gallery = build_gallery(Path(site), options.per_class, seed=options.seed)
        with GalleryServer(gallery.site_dir) as server:
            echo(f"demo gallery: {options.per_class} pictures per class at {server.url}")
            notes = [skipped] if skipped else []  # the report says why ResNet50 did not run
            params = pipeline_params(options, server.url, gallery, weights, notes)
            result = image_pipeline(params=params)
    return DemoResult(
        run_id=result.run_id,
        report_path=result.report_path,
        val_accuracy=result.best_val_accuracy,
        imagenet_note=skipped,
        seconds=time.perf_counter() - started,
        pipeline=result.model_dump(),
    )
