"""scrape_images' parameters: what to scrape, then the stage's settings (tasks.scrape.settings)."""

from __future__ import annotations

from pydantic import Field, model_validator

from flows.params.base import (
    Label,
    LocalPath,
    Runner,
    StageParams,
    check_runner,
    dask_address_field,
    runner_field,
)
from tasks.scrape.settings import ScrapeSettings


class ScrapeInputs(StageParams):
    """What to scrape; a base of its own so these fields come first in the form and --help."""

    pages: list[str] = Field(
        default_factory=list, description="Page URLs to find images on (or give url_list)"
    )
    url_list: LocalPath | None = Field(
        None,
        description="Instead of pages: a CSV, TSV, Parquet or JSON Lines file with a URL column"
        " (and a label column unless label is given), read as a stream",
    )
    url_column: str = Field("url", min_length=1, description="url_list: the column of URLs")
    label_column: str = Field(
        "label", min_length=1, description="url_list: the column of labels (unless label is given)"
    )
    label: Label | None = Field(
        None,
        description="Label (class name) for every image found, e.g. 'banana'; with url_list,"
        " for every row instead of the label column",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ScrapeInputs:
        if bool(self.pages) == bool(self.url_list):
            raise ValueError("give pages or url_list (one of them)")
        if self.pages and self.label is None:
            raise ValueError("pages need a label for their images")
        return self


class ScrapeParams(ScrapeSettings, ScrapeInputs):
    runner: Runner = runner_field("threads", "downloads wait on the network")
    dask_address: str | None = dask_address_field()

    @model_validator(mode="after")
    def runner_field(self) -> ScrapeParams:
        check_runner(self.runner, self.dask_address)
        return self
