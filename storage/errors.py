"""pixelpipe's exceptions: one base class, each subclass also a standard Python type."""


class PixelpipeError(Exception):
    """Base of every error pixelpipe raises on purpose; the CLI prints these as one line."""


class ConfigError(PixelpipeError, ValueError):
    """A parameter or setting is wrong; raised before any work starts."""


class SchemaError(PixelpipeError, ValueError):
    """Rows do not match a warehouse table's schema; nothing was written."""


class ScrapeError(PixelpipeError, OSError):
    """A page or image could not be fetched in a way that stops the whole scrape."""


class BlockedAddressError(ScrapeError):
    """A URL resolves to a loopback/private/link-local/reserved address and
    allow_private_networks is off (server-side request forgery protection)."""


class WeightsNotFoundError(PixelpipeError, FileNotFoundError):
    """Model weights are neither in the Keras cache nor at the given path."""


class AccuracyDropError(PixelpipeError, ValueError):
    """A faster engine (int8) would lose more validation accuracy than allowed; nothing ran."""


class DamagedFileError(PixelpipeError, OSError):
    """A stored file (a Parquet part) cannot be read: truncated, empty or not Parquet."""


class DatasetError(PixelpipeError, ValueError):
    """A prepared dataset would be unusable (a split without a single image); not written."""
