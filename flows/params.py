"""Flow parameters as pydantic models: validated up front, rendered as forms in the Prefect UI.

Each stage flow takes one model (`scrape_images(params=ScrapeParams(...))`, or a plain dict
of the same fields, which Prefect validates into the model before the run starts). The CLI
turns every field into an option, so this module is the one place a parameter is declared.
Keep it free of heavy imports: the CLI imports it to build `--help`.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    create_model,
    model_validator,
)

from storage.layout import NAME_MAX, NAME_PATTERN, safe_name

Runner = Literal["threads", "processes", "dask"]
DASK_INSTALL = 'pip install -e ".[dask]"'  # the `dask` extra: prefect-dask, dask, distributed
OPENVINO_INSTALL = 'pip install -e ".[openvino]"'  # the `openvino` extra: openvino, nncf

DEFAULT_USER_AGENT = "pixelpipe/0.1 (+image dataset builder; respects robots.txt)"


def _name(what: str) -> Any:
    """A run id, label or dataset name: it becomes a folder or file name, so it is checked
    here, before any work and before anything is deleted (the pattern also guards the UI form)."""
    return Annotated[
        str,
        StringConstraints(max_length=NAME_MAX, pattern=NAME_PATTERN),
        AfterValidator(partial(safe_name, what=what)),
    ]


RunId = _name("run id")
Label = _name("label")
DatasetName = _name("dataset name")


class Params(BaseModel):
    """Base of every parameter model: unknown fields are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class StageParams(Params):
    data_dir: str | None = Field(
        None, description="Data root; default $PIXELPIPE_DATA_DIR, else ./data"
    )
    run_id: RunId | None = Field(
        None, description="Run id for the rows and folders written; default: a new one"
    )


def _runner(default: Runner, why: str) -> Any:
    return Field(
        default,
        description=f"Where shards run: threads, processes (this machine) or dask ({why})",
    )


def _dask_address() -> Any:
    return Field(
        None,
        description="runner=dask: scheduler address (tcp://host:8786); default: a local"
        " cluster, one single-threaded worker process per core",
    )


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None, a broken install
        return False


def check_runner(runner: str | None, dask_address: str | None) -> None:
    """runner=dask needs prefect-dask installed, and an address only means something there."""
    if dask_address and runner != "dask":
        raise ValueError("dask_address is only used with runner=dask")
    if runner == "dask":
        import importlib.util

        try:
            found = importlib.util.find_spec("prefect_dask") is not None
        except (ImportError, ValueError):  # a module set to None, a broken install
            found = False
        if not found:
            raise ValueError(f"runner=dask needs prefect-dask, not installed here: {DASK_INSTALL}")


class ScrapeParams(StageParams):
    pages: list[str] = Field(min_length=1, description="Page URLs to find images on")
    label: Label = Field(description="Label (class name) for every image found, e.g. 'banana'")
    max_images: int | None = Field(None, ge=1, description="Stop after this many candidates")
    concurrency: int = Field(16, ge=1, le=256, description="Downloads in flight at once")
    per_host: int = Field(4, ge=1, le=64, description="Downloads in flight per host")
    min_size: int = Field(32, ge=1, description="Smallest accepted short side, in pixels")
    max_bytes: int = Field(20_000_000, ge=1024, description="Largest accepted download")
    timeout: float = Field(15.0, gt=0, le=600, description="Connect and read timeout, seconds")
    retries: int = Field(3, ge=0, le=10, description="Retries on connection errors, 429, 5xx")
    backoff: float = Field(
        0.5, ge=0, le=60, description="First retry waits about this long, then doubling (jitter)"
    )
    follow_pages: int = Field(0, ge=0, le=1000, description="Follow rel=next links this far")
    respect_robots: bool = Field(True, description="Obey robots.txt")
    allow_private_networks: bool = Field(
        False, description="Allow loopback/private/link-local addresses (tests, intranets)"
    )
    user_agent: str = Field(DEFAULT_USER_AGENT, min_length=1, description="User-Agent header")
    shard_size: int = Field(500, ge=1, le=100_000, description="URLs per download task (shard)")
    runner: Runner = _runner("threads", "downloads wait on the network")
    dask_address: str | None = _dask_address()

    @model_validator(mode="after")
    def _runner(self) -> ScrapeParams:
        check_runner(self.runner, self.dask_address)
        return self


class PrepareParams(StageParams):
    source_dir: str | None = Field(
        None, description="A <class>/<image> folder; default: raw/<label>/ under the data root"
    )
    labels: list[str] | None = Field(
        None, description="Classes to use (default: all); 'src=dst' renames a class"
    )
    dataset: DatasetName = Field("default", description="Dataset name: datasets/<dataset>/")
    image_size: int = Field(224, ge=8, le=4096, description="Output side in pixels (square)")
    resize_mode: Literal["stretch", "crop", "pad"] = Field(
        "stretch", description="stretch; crop (center crop to aspect); pad (letterbox)"
    )
    resample: Literal["lanczos", "bicubic"] = Field(
        "lanczos", description="Downsampling filter: lanczos (sharpest) or bicubic (~30% faster)"
    )
    image_format: Literal["jpeg", "png"] = Field("jpeg", description="Output file format")
    quality: int = Field(95, ge=1, le=100, description="JPEG quality")
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="Share of images in val/")
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="Share of images in test/")
    seed: int = Field(1337, description="Seed of the content-hash split")
    max_per_class: int | None = Field(None, ge=1, description="Keep at most this many per class")
    workers: int | None = Field(None, ge=1, le=256, description="Processes; default: all cores")
    batch_size: int = Field(256, ge=1, le=10_000, description="Images per task")
    force: bool = Field(False, description="Re-render every image even if its output exists")
    runner: Runner = _runner("processes", "processes: the `workers` pool")
    dask_address: str | None = _dask_address()

    @model_validator(mode="after")
    def _fractions(self) -> PrepareParams:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must be below 1 (leave images to train)")
        check_runner(self.runner, self.dask_address)
        return self


class AugmentationParams(Params):
    """The classic ImageDataGenerator knobs, with their meaning; all off by default."""

    rotation_range: float = Field(0.0, ge=0, le=180, description="Random rotation, ± degrees")
    width_shift_range: float = Field(0.0, ge=0, lt=1, description="Horizontal shift, ± width share")
    height_shift_range: float = Field(0.0, ge=0, lt=1, description="Vertical shift, ± height share")
    shear_range: float = Field(0.0, ge=0, lt=90, description="Shear angle, ± degrees")
    zoom_range: tuple[float, float] = Field(
        (1.0, 1.0), description="Zoom factor range (lower, upper); above 1 zooms out, as in Keras 2"
    )
    brightness_range: tuple[float, float] | None = Field(
        None, description="Multiplicative brightness range (lower, upper), e.g. 0.5 1.0"
    )
    horizontal_flip: bool = Field(False, description="Randomly mirror left-right")
    vertical_flip: bool = Field(False, description="Randomly mirror top-bottom")
    fill_mode: Literal["nearest", "reflect", "wrap", "constant"] = Field(
        "nearest", description="How pixels outside the image are filled"
    )
    cval: float = Field(0.0, ge=0, le=255, description="Fill value for fill_mode=constant")

    @model_validator(mode="after")
    def _ranges(self) -> AugmentationParams:
        for name in ("zoom_range", "brightness_range"):
            pair = getattr(self, name)
            if pair is not None and not 0 < pair[0] <= pair[1]:
                raise ValueError(f"{name} must be (lower, upper) with 0 < lower <= upper")
        return self


class TrainParams(StageParams):
    dataset_dir: str | None = Field(
        None, description="Prepared dataset folder with train/ and val/ (required alone)"
    )
    model: Literal["cifar_cnn", "small_cnn", "resnet50_transfer", "mobilenet_transfer"] = Field(
        "small_cnn", description="Model to train"
    )
    epochs: int = Field(10, ge=1, le=1000, description="Epochs to train")
    batch_size: int = Field(32, ge=1, le=4096, description="Images per batch")
    image_size: int | None = Field(
        None, ge=8, le=4096, description="Input side in pixels; default: the dataset's"
    )
    augmentation: AugmentationParams = Field(
        default_factory=AugmentationParams, description="Training-only augmentation"
    )
    optimizer: Literal["adam", "nadam", "sgd", "rmsprop"] | None = Field(
        None, description="Override the model's optimizer"
    )
    learning_rate: float | None = Field(None, gt=0, le=10, description="Override the model's LR")
    weights: str | None = Field(
        "imagenet", description="Backbone weights: 'imagenet', a local .h5 file, or none"
    )
    alpha: float = Field(0.25, gt=0, le=1.4, description="MobileNet width multiplier")
    fine_tune_layers: int = Field(0, ge=0, description="Unfreeze the top N backbone layers")
    fine_tune_epochs: int = Field(
        0, ge=0, le=1000, description="Epochs after `epochs` with those layers unfrozen, LR / 10"
    )
    validation_split: float = Field(
        0.0, ge=0, lt=1, description="Hold out this share of train/ when there is no val/"
    )
    early_stopping_patience: int | None = Field(None, ge=1, description="Stop after N flat epochs")
    mixed_precision: bool = Field(False, description="Train in mixed_bfloat16")
    seed: int = Field(42, description="Seed for shuffling, augmentation and weights")
    resume_run: RunId | None = Field(None, description="Continue this run's training")
    export: list[Literal["openvino"]] = Field(
        default_factory=list,
        description="Also export the best model for inference: openvino (fp32 IR beside it,"
        " reused by predict --backend openvino; needs the openvino extra)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainParams:
        transfer = self.model in ("resnet50_transfer", "mobilenet_transfer")
        if (self.fine_tune_layers or self.fine_tune_epochs) and not transfer:
            raise ValueError("fine_tune_layers/fine_tune_epochs need a *_transfer model")
        if bool(self.fine_tune_layers) != bool(self.fine_tune_epochs):
            raise ValueError("give both fine_tune_layers and fine_tune_epochs, or neither")
        least = 32 if transfer else 18
        if self.image_size is not None and self.image_size < least:
            raise ValueError(f"image_size must be at least {least} for {self.model}")
        if self.resume_run and self.run_id and self.resume_run != self.run_id:
            raise ValueError("resume_run continues that run: leave run_id empty or equal to it")
        if "openvino" in self.export and not _installed("openvino"):
            raise ValueError(
                f"export=openvino needs OpenVINO, not installed here: {OPENVINO_INSTALL}"
            )
        return self


class AugmentPreviewParams(Params):
    dataset_dir: str = Field(description="Dataset folder (train/<class>/) or a <class>/ folder")
    out: str = Field("augment-preview.png", description="PNG file to write")
    variants: int = Field(8, ge=1, le=64, description="Augmented variants per image")
    images: int = Field(4, ge=1, le=32, description="Training images shown (one row each)")
    image_size: int | None = Field(None, ge=8, le=1024, description="Side; default: the images'")
    seed: int = Field(0, description="Seed of the random transforms")
    augmentation: AugmentationParams = Field(
        default_factory=AugmentationParams, description="The augmentation to preview"
    )


class PredictParams(StageParams):
    inputs: list[str] = Field(
        default_factory=list, description="Image files or folders (searched recursively)"
    )
    scrape_run: RunId | None = Field(None, description="Predict the ok images of this scrape run")
    dataset_dir: str | None = Field(None, description="Predict a split of this dataset")
    split: Literal["train", "val", "test"] = Field("val", description="Split of dataset_dir")
    model: str = Field(
        "resnet50",
        description="An ImageNet backbone (resnet50, mobilenet_v2, resnet101, vgg16, ...), a"
        " best.keras (or its folder, or a train run id) or a .tflite classifier",
    )
    weights: str | None = Field(
        "imagenet", description="ImageNet backbone weights: 'imagenet', a local file, or none"
    )
    top_k: int = Field(3, ge=1, le=20, description="Labels kept per image")
    targets: list[str] = Field(
        default_factory=lambda: ["banana"], description="Class names or WordNet ids to look for"
    )
    target_rank: int | None = Field(
        None, ge=1, description="A target counts within this rank (default: top_k, < classes)"
    )
    threshold: float = Field(0.5, ge=0, le=1, description="Binary models: class 1 at or above")
    batch_size: int = Field(32, ge=1, le=4096, description="Images per model call")
    mixed_precision: bool = Field(
        False, description="Run an ImageNet backbone in mixed_bfloat16 (faster on AMX/GPU)"
    )
    shard_size: int = Field(1000, ge=1, description="Images per task (shard)")
    runner: Runner = _runner("threads", "threads: one shard at a time, the model uses every core")
    dask_address: str | None = _dask_address()
    backend: Literal["keras", "openvino"] = Field(
        "keras",
        description="Inference engine: keras, or openvino (the model converted once, cached"
        " beside it; needs the openvino extra)",
    )
    precision: Literal["fp32", "bf16", "int8"] = Field(
        "fp32",
        description="backend=openvino: fp32, bf16 (AMX), or int8 (NNCF post-training quantization)",
    )
    max_accuracy_drop: float = Field(
        0.5,
        le=100,
        description="int8 of a trained model: refuse when validation accuracy drops more than"
        " this many points below fp32 (100: no check)",
    )
    calibration_size: int = Field(
        300, ge=1, le=10_000, description="int8: calibration images (train split, else inputs)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> PredictParams:
        given = [bool(self.inputs), self.scrape_run is not None, self.dataset_dir is not None]
        if sum(given) > 1:
            raise ValueError("give only one of inputs, scrape_run or dataset_dir")
        check_runner(self.runner, self.dask_address)
        return self

    @model_validator(mode="after")
    def _engine(self) -> PredictParams:
        if self.backend == "keras":
            if self.precision != "fp32":
                raise ValueError(
                    "precision applies to backend=openvino; the Keras backend's bf16 is"
                    " mixed_precision"
                )
            return self
        if self.mixed_precision:
            raise ValueError("mixed_precision is the Keras backend's bf16: use precision=bf16")
        needed = ["openvino"] + (["nncf"] if self.precision == "int8" else [])
        missing = [name for name in needed if not _installed(name)]
        if missing:
            raise ValueError(
                f"backend=openvino needs {' and '.join(missing)}, not installed here:"
                f" {OPENVINO_INSTALL}"
            )
        return self

    @model_validator(mode="after")
    def _target_rank(self) -> PredictParams:
        if self.target_rank is not None and self.target_rank > self.top_k:
            raise ValueError("target_rank must be at most top_k (targets are marked on kept rows)")
        return self


class ReportParams(StageParams):
    run_id: RunId = Field(description="The run to report on")
    title: str | None = Field(None, description="Report title; default: 'pixelpipe run <id>'")
    scrape_run: RunId | None = Field(None, description="Scrape rows of this run; default: run_id")
    dataset_run: RunId | None = Field(None, description="Dataset rows of this run; default: run_id")
    train_run: RunId | None = Field(
        None, description="Training history and model of this run; default: run_id"
    )
    predict_run: RunId | None = Field(None, description="Predictions of this run; default: run_id")
    sample: int = Field(8, ge=1, le=64, description="Images shown per label / in the top-k table")
    max_filters: int = Field(16, ge=1, le=64, description="Learned filters shown")
    notes: list[str] = Field(
        default_factory=list, description="Lines shown under the title (e.g. a skipped stage)"
    )


# --- image_pipeline (the parent flow) -------------------------------------------------------
# Each stage's options inside the pipeline are that stage's model minus what the pipeline
# decides itself (data root, run id, inputs wired from the previous stage). They are derived,
# not copied, so a field added to a stage model shows up in `pixelpipe run` automatically.


def _options_of(model: type[StageParams], name: str, drop: set[str]) -> type[Params]:
    fields = {
        key: (field.annotation, field)
        for key, field in model.model_fields.items()
        if key not in drop | {"data_dir", "run_id"}
    }
    return create_model(
        name, __base__=Params, __doc__=f"{model.__name__} inside a pipeline.", **fields
    )


ScrapeOptions = _options_of(ScrapeParams, "ScrapeOptions", {"pages", "label"})
PrepareOptions = _options_of(PrepareParams, "PrepareOptions", {"source_dir"})
TrainOptions = _options_of(TrainParams, "TrainOptions", {"dataset_dir", "resume_run"})
PredictOptions = _options_of(
    PredictParams, "PredictOptions", {"scrape_run", "dataset_dir", "model", "weights", "targets"}
)


class PipelineParams(Params):
    """scrape -> prepare -> train -> predict -> report; give a later stage's input to skip."""

    data_dir: str | None = Field(
        None, description="Data root; default $PIXELPIPE_DATA_DIR, else ./data"
    )
    run_id: RunId | None = Field(None, description="One run id for every stage; default: a new one")
    sources: list[str] = Field(
        default_factory=list,
        description="Pages to scrape as LABEL=URL (repeat per page and label), "
        "e.g. mountain=https://example.com/alps.html",
    )
    source_dir: str | None = Field(
        None, description="Skip scraping: prepare this folder (one subfolder of images per class)"
    )
    dataset_dir: str | None = Field(
        None, description="Skip scraping and preparing: train on this prepared dataset"
    )
    model_path: str | None = Field(
        None, description="Skip training: predict with this trained best.keras"
    )
    targets: list[str] = Field(
        default_factory=list, description="Classes of the trained model to count as hits"
    )
    imagenet_weights: str | None = Field(
        None,
        description="Also classify with ResNet50 ImageNet: 'imagenet' (Keras cache) or a local "
        ".h5 file; none skips that stage",
    )
    imagenet_targets: list[str] = Field(
        default_factory=lambda: ["banana"],
        description="ImageNet classes or WordNet ids to look for in the ResNet50 stage",
    )
    scrape: ScrapeOptions = Field(default_factory=ScrapeOptions, description="Scraping")
    prepare: PrepareOptions = Field(default_factory=PrepareOptions, description="Preparing")
    train: TrainOptions = Field(default_factory=TrainOptions, description="Training")
    predict: PredictOptions = Field(default_factory=PredictOptions, description="Predicting")
    report_title: str | None = Field(None, description="Report title")
    report_notes: list[str] = Field(
        default_factory=list, description="Lines under the report's title (e.g. a skipped stage)"
    )
    runner: Runner | None = Field(
        None,
        description="Where scrape, prepare and predict shards run (threads, processes or dask);"
        " default: each stage's own",
    )
    dask_address: str | None = Field(
        None, description="runner=dask: one scheduler (tcp://host:8786) for every stage"
    )

    @model_validator(mode="after")
    def _one_runner(self) -> PipelineParams:
        """A pipeline-wide runner replaces the stages' own, before their checks below."""
        check_runner(self.runner, self.dask_address)
        if self.runner is not None:
            for stage in (self.scrape, self.prepare, self.predict):
                stage.runner, stage.dask_address = self.runner, self.dask_address
        return self

    @model_validator(mode="after")
    def _inputs(self) -> PipelineParams:
        given = [n for n in ("sources", "source_dir", "dataset_dir") if getattr(self, n)]
        if len(given) > 1:
            raise ValueError(f"give only one of sources, source_dir, dataset_dir (got {given})")
        if not given and not (self.model_path and self.predict.inputs):
            raise ValueError(
                "nothing to start from: give sources (LABEL=URL), source_dir or dataset_dir,"
                " or model_path with predict inputs"
            )
        # The stage models' own cross-field checks, before any stage runs.
        for label, pages in self.source_pages().items():  # also checks LABEL=URL
            ScrapeParams(**self.scrape.model_dump(), pages=pages, label=label)
        PrepareParams(**self.prepare.model_dump())
        if not self.model_path:
            train = self.train.model_dump()
            if train["image_size"] is None and not self.dataset_dir:  # trains at prepare's size
                train["image_size"] = self.prepare.image_size
            TrainParams(**train)
        PredictParams(**self.predict.model_dump())
        return self

    def source_pages(self) -> dict[str, list[str]]:
        """`sources` grouped by label, in the order given."""
        pages: dict[str, list[str]] = {}
        for entry in self.sources:
            label, sep, url = entry.partition("=")
            if not sep or not label.strip() or not url.strip().startswith(("http://", "https://")):
                raise ValueError(f"source {entry!r} must look like LABEL=http(s)://host/page")
            label = safe_name(label.strip(), "label")  # it becomes raw/<label>/
            pages.setdefault(label, []).append(url.strip())
        return pages
