"""ImageNet weights files: found in the Keras cache, fetched by Keras, or one clear error."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from storage.errors import WeightsNotFoundError

# Set to "1" to never try a download (tests, air-gapped machines): a missing cache file is
# then reported at once instead of after a failed fetch.
OFFLINE_ENV = "PIXELPIPE_OFFLINE"


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def keras_cache_dirs() -> list[Path]:
    """Where Keras keeps downloads: $KERAS_HOME (default ~/.keras), or /tmp/.keras when that
    is not writable (keras.utils.get_file's own fallback, where it then writes; a read-only
    home may still hold a file put there for it)."""
    home = Path(os.environ.get("KERAS_HOME") or "~/.keras").expanduser()
    return [home] if os.access(home, os.W_OK) else [Path("/tmp/.keras"), home]


def cached_weights(file: str, md5: str | None = None) -> Path | None:
    """The file in a Keras cache (with the right md5 when one is known), else None."""
    for cache in keras_cache_dirs():
        cached = cache / "models" / file
        if cached.is_file() and (md5 is None or file_digest(cached, "md5") == md5):
            return cached
    return None


def imagenet_weights(what: str, file: str, origin: str, md5: str | None = None) -> Path:
    """The cached weights `file`, downloaded by Keras into its cache if missing.

    Offline, Keras only says `Exception: URL fetch failure`; this names the file, where Keras
    expects it, and the option that points elsewhere.
    """
    if (cached := cached_weights(file, md5)) is not None:
        return cached
    where = keras_cache_dirs()[0] / "models"
    problem = f"downloads are off (${OFFLINE_ENV}=1)"
    if os.environ.get(OFFLINE_ENV) != "1":
        import keras

        try:
            return Path(
                keras.utils.get_file(
                    file, origin, cache_subdir="models", cache_dir=str(where.parent), file_hash=md5
                )
            )
        except Exception as e:  # Keras raises a bare Exception for every download failure
            problem = f"it could not be downloaded ({str(e).splitlines()[0][:120]})"
    checksum = f" (md5 {md5})" if md5 else ""
    raise WeightsNotFoundError(
        f"ImageNet weights for {what} are not in the Keras cache: Keras expects"
        f" {where / file}{checksum}, and {problem}. Copy the file there (on a machine with"
        " internet access Keras downloads it on first use), or point at it with --weights PATH"
        " (or --weights none for random weights)."
    )
