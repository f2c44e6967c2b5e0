"""The dataset stamp, `<dataset>/dataset.json`: what the last finished prepare run rendered
(its settings, counts and the images that failed to decode), so a re-run reuses its outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from storage import files

STAMP_FILE = "dataset.json"


def read_stamp(dataset_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((dataset_dir / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_stamp(dataset_dir: Path, stamp: dict[str, Any]) -> None:
    files.write_text(dataset_dir / STAMP_FILE, json.dumps(stamp, indent=2, sort_keys=True))


def clear_stamp(dataset_dir: Path) -> None:
    (dataset_dir / STAMP_FILE).unlink(missing_ok=True)


def stamp_matches(dataset_dir: Path, render: dict[str, Any]) -> bool:
    """Whether the folder's outputs were rendered with these settings (so they can be reused)."""
    stamp = read_stamp(dataset_dir)
    return stamp is not None and stamp.get("render") == render


def known_failures(rows: pd.DataFrame) -> dict[str, list[str]]:
    """sha256 -> [status, error] of the images whose decoding failed, for the stamp."""
    hit = rows["status"].isin(["corrupt", "unsupported"]) & rows["sha256"].notna()
    failed = rows.loc[hit.to_numpy(), ["sha256", "status", "error"]]  # those rows' 3 columns only
    return {
        sha: [status, error]
        for sha, status, error in zip(
            failed["sha256"], failed["status"], failed["error"], strict=True
        )
    }
