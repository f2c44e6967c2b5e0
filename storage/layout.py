"""Where everything lives under the data root (the tree in README.md), and how runs are named."""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from storage.errors import ConfigError

DATA_DIR_ENV = "PIXELPIPE_DATA_DIR"
DEFAULT_DATA_DIR = "./data"

# Labels, dataset names and run ids become folder and file names: keep them to one safe path
# segment so nothing a user (or a scraped page) says can write outside the data root. 64
# characters leave room for every suffix the code appends (`<run>-<label>-0001.parquet` and its
# hidden temporary name stay far below a file system's 255).
NAME_MAX = 64
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # for JSON schema (the UI form); safe_name decides
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def safe_name(value: str, what: str = "name") -> str:
    """Return `value` if it is usable as one folder name, else raise a ConfigError saying why."""
    if (
        not isinstance(value, str)
        or len(value) > NAME_MAX
        or not _SAFE_NAME.fullmatch(value)
        or ".." in value
    ):
        raise ConfigError(
            f"{what} {value!r} is not a valid name: use letters, digits, '.', '_' or '-'"
            f" (at most {NAME_MAX} characters, starting with a letter or digit, no '..')"
        )
    return value


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id such as `20261128-141434-a1b2c3`."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data root: the argument, else $PIXELPIPE_DATA_DIR, else ./data (made absolute)."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser().resolve()


@dataclass(frozen=True)
class Layout:
    """Paths under one data root. Nothing here touches the disk except `ensure`."""

    root: Path

    @classmethod
    def at(cls, data_dir: str | os.PathLike[str] | None = None) -> Layout:
        return cls(resolve_data_dir(data_dir))

    def raw(self, label: str) -> Path:
        return self.root / "raw" / safe_name(label, "label")

    def dataset(self, name: str) -> Path:
        return self.root / "datasets" / safe_name(name, "dataset name")

    def model_dir(self, run_id: str) -> Path:
        return self.root / "models" / safe_name(run_id, "run id")

    @property
    def champions_dir(self) -> Path:
        return self.root / "models" / "champions"

    def champion_file(self, dataset: str) -> Path:
        """`models/champions/<dataset>.json`: the dataset's current champion."""
        return self.champions_dir / f"{safe_name(dataset, 'dataset name')}.json"

    def report_dir(self, run_id: str) -> Path:
        return self.root / "reports" / safe_name(run_id, "run id")

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse"

    def table_dir(self, table: str) -> Path:
        return self.warehouse / safe_name(table, "table")

    def table_file(self, table: str, run_id: str, run_date: str, part: str | None = None) -> Path:
        """`warehouse/<table>/run_date=YYYY-MM-DD/<run_id>[-<part>].parquet`."""
        stem = safe_name(run_id, "run id") + (f"-{safe_name(part, 'part')}" if part else "")
        return self.table_dir(table) / f"run_date={run_date}" / f"{stem}.parquet"

    @staticmethod
    def ensure(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        return path
