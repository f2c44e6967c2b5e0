"""The scrape stage's settings, declared once: the tasks take this model, and the flow's
parameters (flows/params/scrape.py) extend it, so the CLI options and the UI form derive from it."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator

from storage.files import MAX_PIXELS
from storage.params import Settings

DEFAULT_USER_AGENT = "pixelpipe/0.1 (+image dataset builder; respects robots.txt)"


class ScrapeSettings(Settings):
    """How to find, download and keep images; plain values, so a task can take it as an
    argument (it pickles to process and Dask workers)."""

    max_images: int | None = Field(None, ge=1, description="Stop after this many candidates")
    concurrency: int = Field(16, ge=1, le=256, description="Downloads in flight at once")
    per_host: int = Field(4, ge=1, le=64, description="Downloads in flight per host")
    min_size: int = Field(32, ge=1, description="Smallest accepted short side, in pixels")
    max_bytes: int = Field(20_000_000, ge=1024, description="Largest accepted download")
    timeout: float = Field(15.0, gt=0, le=600, description="Connect and read timeout, seconds")
    retries: int = Field(3, ge=0, le=10, description="Retries on connection errors, 429, 5xx")
    backoff: float = Field(
        0.5, ge=0, le=60, description="Backoff factor: retries wait 0, 2x, 4x ... this (jitter)"
    )
    backoff_max: float = Field(30.0, ge=0, le=3600, description="Cap of the retry backoff, s")
    max_retry_after: float = Field(
        120.0, ge=0, le=86_400, description="Give up on a URL rather than wait a longer Retry-After"
    )
    max_redirects: int = Field(10, ge=0, le=100, description="Redirects followed per URL")
    follow_pages: int = Field(0, ge=0, le=1000, description="Follow rel=next links this far")
    respect_robots: bool = Field(True, description="Obey robots.txt")
    allow_private_networks: bool = Field(
        False, description="Allow loopback/private/link-local addresses (tests, intranets)"
    )
    user_agent: str = Field(DEFAULT_USER_AGENT, min_length=1, description="User-Agent header")
    # Each shard costs a task run (three events the server records) and a host lease (four API
    # calls; in a flow, most meet a busy answer while those events are written): 1,000 URLs, as
    # predict's 1,000 images, keep that near 1% of a shard's time on loopback.
    shard_size: int = Field(1000, ge=1, le=100_000, description="URLs per download task (shard)")
    host_lease_s: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="Lease on a host's download slots, renewed while a shard runs: a worker that"
        " dies blocks its hosts at most this long",
    )
    deadline: float | None = Field(
        None, gt=0, le=3600, description="Total seconds per URL (connect, headers, body, its"
        " redirects and retries); past it the URL is `timeout`. Default: 4 x timeout",
    )  # fmt: skip
    max_pixels: int = Field(
        MAX_PIXELS, ge=1024, le=1_000_000_000,
        description="Largest image in pixels (width x height); larger is `too_large`, undecoded",
    )  # fmt: skip
    max_candidates: int = Field(
        5000, ge=1, le=1_000_000, description="Image URLs kept per page; the rest are dropped"
    )
    proxy: str | None = Field(
        None, description="Send requests through this http(s) proxy; it must itself pass the"
        " address guard (a private proxy needs allow_private_networks)",
    )  # fmt: skip
    trust_env: bool = Field(
        False, description="Use the proxies of HTTP_PROXY/HTTPS_PROXY (off: they are ignored)"
    )
    respect_x_robots_tag: bool = Field(
        True, description="Skip images whose X-Robots-Tag says noai/noimageai/noindex/noimageindex"
    )

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"proxy {value!r}: give http://host:port or https://host:port")
        return value

    @property
    def deadline_s(self) -> float:
        """Time one request may take in all, so a server dripping bytes cannot stall a worker."""
        return self.deadline if self.deadline is not None else self.timeout * 4

    def settings(self) -> ScrapeSettings:
        """Only the settings (a subclass's inputs and runner dropped): what the tasks get."""
        return ScrapeSettings.model_validate(
            self.model_dump(include=set(ScrapeSettings.model_fields))
        )
