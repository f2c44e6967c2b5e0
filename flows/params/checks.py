"""Checks of a pipeline's or a curation's parameters against the disk (folders, classes, model
files, weights files): no TensorFlow and no Prefect, so the command line runs them before
loading either, and the flows run them again before any work."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flows.params.curate import CurateParams
from flows.params.pipeline import PipelineParams
from storage.errors import ConfigError
from storage.layout import Layout, safe_name
from tasks.curate.features import FeatureSpec, feature_spec
from tasks.curate.inputs import find_images, imagenet_classifier
from tasks.predict.labels import check_targets, imagenet_labels
from tasks.predict.spec import ModelSpec, resolve_model
from tasks.scrape.url_list import check_columns


def dataset_classes(dataset_dir: Path) -> list[str]:
    return sorted(p.name for p in (dataset_dir / "train").iterdir() if p.is_dir())


def check_inputs(params: PipelineParams) -> list[str] | None:
    """Disk checks before any stage runs; returns the class names when already knowable."""
    classes: list[str] | None = None
    if params.source_dir:
        source = Path(params.source_dir)
        if not source.is_dir():
            raise ConfigError(f"source_dir {source} is not a folder (give a <class>/<image> tree)")
        classes = sorted(p.name for p in source.iterdir() if p.is_dir())
    if params.dataset_dir:
        dataset = Path(params.dataset_dir)
        if not (dataset / "train").is_dir() or not (dataset / "val").is_dir():
            raise ConfigError(
                f"dataset_dir {dataset} needs train/ and val/ (see pixelpipe prepare)"
            )
        classes = dataset_classes(dataset)
        if params.promote != "never" and not params.model_path:  # the registry names it so
            safe_name(dataset.resolve().name, "dataset name (dataset_dir's folder name)")
    if params.sources:
        classes = sorted(params.source_pages())
    scrape = params.scrape
    if scrape.url_list:  # a missing column fails before any stage, naming those found
        check_columns(scrape.url_list, scrape.url_column, scrape.label_column)
    if params.prepare.labels and (params.sources or params.source_dir):
        classes = sorted(label.partition("=")[2] or label for label in params.prepare.labels)
    if params.model_path:
        classes = _check_model(Path(params.model_path))
    if params.targets and classes is not None:
        unknown = sorted(set(params.targets) - set(classes))
        if unknown:
            raise ConfigError(f"targets {unknown} are not classes of this run (classes: {classes})")
    if params.imagenet_weights:
        check_targets(imagenet_labels(), params.imagenet_targets)
        _check_imagenet_weights(params.imagenet_weights)
    return classes


def _check_model(model: Path) -> list[str]:
    if not model.is_file():
        raise ConfigError(f"model_path {model} does not exist (a best.keras from pixelpipe train)")
    return list(resolve_model(str(model)).labels.names)


def _check_imagenet_weights(weights: str) -> None:
    # names the missing file, its folder and this command's option when absent
    resolve_model("resnet50", weights, weights_option="--imagenet-weights")


@dataclass(frozen=True)
class CurateInputs:
    """What curate_images works on, once checked: its folder, the images (not hashed yet), and
    the on-topic classifier and label-check backbone when those checks run."""

    root: Path
    images: list[tuple[str, str]]  # (path, label)
    classifier: ModelSpec | None
    features: FeatureSpec | None


def check_curate(params: CurateParams) -> CurateInputs:
    """The folder holds images of the labels asked for, --expect names labels that have
    images, and the classifier's and the backbone's weights files exist."""
    root = Layout.at(params.data_dir).root / "raw"
    if params.source_dir:
        root = Path(params.source_dir).expanduser().resolve()
    images = find_images(root, params.labels)
    classifier = None
    if expect := params.expectations():
        labels = {label for _, label in images}
        weights = params.classifier_weights
        classifier = imagenet_classifier(params.classifier, weights, expect, labels)
    features = None
    if params.label_issues:
        features = feature_spec(
            params.features, params.feature_weights, params.alpha, params.feature_size
        )
    return CurateInputs(root, images, classifier, features)
