"""scrape_images' parameters: what to scrape, then the stage's settings (tasks.scrape.settings)."""

from __future__ import annotations

from pydantic import Field, model_validator

from flows.params.base import (
    Label,
    Runner,
    StageParams,
    check_runner,
    dask_address_field,
    runner_field,
)
from tasks.scrape.settings import ScrapeSettings


class ScrapeInputs(StageParams):
    """What to scrape; a base of its own so these fields come first in the form and --help."""

    pages: list[str] = Field(min_length=1, description="Page URLs to find images on")
    label: Label = Field(description="Label (class name) for every image found, e.g. 'banana'")


class ScrapeParams(ScrapeSettings, ScrapeInputs):
    runner: Runner = runner_field("threads", "downloads wait on the network")
    dask_address: str | None = dask_address_field()

    @model_validator(mode="after")
    def runner_field(self) -> ScrapeParams:
        check_runner(self.runner, self.dask_address)
        return self
