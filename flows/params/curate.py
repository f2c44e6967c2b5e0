"""curate_images' parameters."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from flows.params.base import Label, LocalPath, ModelRef, StageParams, WeightsPath


class CurateParams(StageParams):
    source_dir: LocalPath | None = Field(
        None, description="A <class>/<image> folder; default: raw/ under the data root"
    )
    labels: list[Label] | None = Field(None, description="Labels to check (default: all)")
    expect: list[str] = Field(
        default_factory=list,
        description="On-topic check: LABEL=CLASS[,CLASS...] ImageNet classes (names or WordNet"
        " ids) that count for a label, e.g. banana=banana or mountain=alp,volcano,valley;"
        " images of labels named here whose top-k holds none of them are off_topic",
    )
    top_k: int = Field(5, ge=1, le=50, description="On-topic: ImageNet classes looked at")
    classifier: ModelRef = Field(
        "resnet50",
        description="On-topic: an ImageNet classifier predict_batch accepts (a backbone name,"
        " an ImageNet .tflite or .keras file)",
    )
    classifier_weights: WeightsPath | None = Field(
        "imagenet", description="On-topic, backbone classifier: 'imagenet', a local .h5, or none"
    )
    label_issues: bool = Field(True, description="Find images whose label looks wrong")
    features: Literal["mobilenet", "resnet50", "pixels"] = Field(
        "mobilenet",
        description="Label issues: frozen ImageNet backbone giving the features, or pixels"
        " (8x8 colour thumbnails: no weights, for colour-coded classes)",
    )
    feature_weights: WeightsPath | None = Field(
        "imagenet", description="Label issues: backbone weights: 'imagenet', a local .h5, or none"
    )
    alpha: float = Field(0.25, gt=0, le=1.0, description="Label issues: MobileNet width")
    feature_size: int = Field(224, ge=32, le=512, description="Label issues: backbone input side")
    folds: int = Field(5, ge=2, le=20, description="Label issues: cross-validation folds")
    seed: int = Field(0, description="Seed of the folds")
    batch_size: int = Field(32, ge=1, le=1024, description="Images per model call")

    @model_validator(mode="after")
    def _checks(self) -> CurateParams:
        self.expectations()  # LABEL=CLASS,... well formed
        if not self.expect and not self.label_issues:
            raise ValueError("nothing to check: give --expect LABEL=CLASS or keep label_issues on")
        return self

    def expectations(self) -> dict[str, list[str]]:
        """`expect` as label -> ImageNet class names / WordNet ids."""
        found: dict[str, list[str]] = {}
        for entry in self.expect:
            label, sep, classes = entry.partition("=")
            names = [c.strip() for c in classes.split(",") if c.strip()]
            if not sep or not label.strip() or not names:
                raise ValueError(f"expect {entry!r} must look like LABEL=CLASS[,CLASS...]")
            found.setdefault(label.strip(), []).extend(names)
        return found
