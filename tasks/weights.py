"""ImageNet weights files: one documented folder, found there, fetched by Keras, or one error.

The folder is Keras's own cache, `$KERAS_HOME/models` (default `~/.keras/models`): Keras
downloads into it and `keras.applications` reads from it, so pixelpipe adds no second place.
Every missing-weights message and note ends with `weights_hint(option)`, which names that
folder the same way on every run and the option of the command that points elsewhere.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from storage.errors import WeightsNotFoundError

# Set to "1" to never try a download (tests, air-gapped machines): a missing cache file is
# then reported at once instead of after a failed fetch.
OFFLINE_ENV = "PIXELPIPE_OFFLINE"
HOME_ENV = "KERAS_HOME"  # Keras's own variable: the folder is $KERAS_HOME/models
DEFAULT_HOME = "~/.keras"


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _keras_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def weights_folder_text() -> str:
    """The weights folder as messages say it: `~/.keras/models` for the home default (the
    same words on every machine and run, whether or not Keras has created it yet), else the
    folder $KERAS_HOME names."""
    home = _keras_home()
    if home == Path(DEFAULT_HOME).expanduser():
        return f"{DEFAULT_HOME}/models"
    return str(home / "models")


def _writable(folder: Path) -> bool:
    """Whether Keras can write there: the folder, or the nearest parent that exists (Keras
    creates ~/.keras when it is first imported, so a missing one is not a read-only one)."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return os.access(folder, os.W_OK)


def keras_cache_dirs() -> list[Path]:
    """Where Keras keeps downloads: $KERAS_HOME (default ~/.keras), or /tmp/.keras when that
    is not writable (keras.utils.get_file's own fallback, where it then writes; a read-only
    home may still hold a file put there for it)."""
    home = _keras_home()
    return [home] if _writable(home) else [Path("/tmp/.keras"), home]


def cached_weights(file: str, md5: str | None = None) -> Path | None:
    """The file in a Keras cache (with the right md5 when one is known), else None."""
    for cache in keras_cache_dirs():
        cached = cache / "models" / file
        if cached.is_file() and (md5 is None or file_digest(cached, "md5") == md5):
            return cached
    return None


def weights_hint(option: str, file: str | None = None, random: bool = True) -> str:
    """What to do about missing weights, in the same words in every error and note: the one
    folder (and the variable that moves it) and `option`, the command's own weights option
    (--weights, --feature-weights...). `file`: the ImageNet file that is missing, if any."""
    folder = weights_folder_text()
    if file:
        hint = (
            f"put {file} in {folder} (Keras's cache, where Keras downloads it when online;"
            f" ${HOME_ENV}/models when {HOME_ENV} is set), or pass {option} PATH to use a copy"
            " elsewhere"
        )
    else:
        hint = (
            f"pass {option} PATH with an existing file, or {option} imagenet for the file in"
            f" {folder} (Keras's cache, ${HOME_ENV}/models when {HOME_ENV} is set)"
        )
    return hint + (f", or {option} none for random weights" if random else "")


def missing_weights_file(path: str | os.PathLike[str], option: str) -> WeightsNotFoundError:
    """The error for a weights path that names no file."""
    return WeightsNotFoundError(f"weights file {path} does not exist: {weights_hint(option)}")


def imagenet_weights(
    what: str, file: str, origin: str, md5: str | None = None, option: str = "--weights"
) -> Path:
    """The cached weights `file`, downloaded by Keras into its cache if missing.

    Offline, Keras only says `Exception: URL fetch failure`; this names the file, where it
    goes, and `option`, the command's option that points elsewhere.
    """
    if (cached := cached_weights(file, md5)) is not None:
        return cached
    problem = f"downloads are off (${OFFLINE_ENV}=1)"
    if os.environ.get(OFFLINE_ENV) != "1":
        import keras

        try:
            return Path(
                keras.utils.get_file(
                    file,
                    origin,
                    cache_subdir="models",
                    cache_dir=str(keras_cache_dirs()[0]),
                    file_hash=md5,
                )
            )
        except Exception as e:  # Keras raises a bare Exception for every download failure
            problem = f"it could not be downloaded ({str(e).splitlines()[0][:120]})"
    checksum = f" (md5 {md5})" if md5 else ""
    raise WeightsNotFoundError(
        f"ImageNet weights for {what} are not in the Keras cache: {weights_folder_text()}/{file}"
        f"{checksum} is missing and {problem}. To fix it, {weights_hint(option, file)}."
    )
