"""The report's Dataset health section: what to clean before trusting a number.

The checks follow cleanvision's list (near and exact duplicates, dark, bright, low-information,
odd size) plus cross-class conflicts and class balance, computed from what prepare already
measured on its own decode (dataset_manifest: sizes, perceptual hash and group, brightness,
contrast), so the report decodes nothing again. cleanvision itself is not used: it re-reads
and decodes every image in its own pass and brings its own dependency stack, for numbers the
manifest already holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import pandas as pd

from tasks.report.document import Facts, Section, Table, Text, Thumb

EXAMPLES = 3  # per check
GROUP_THUMBS = 4  # thumbnails side by side per near-duplicate group
DARK, BRIGHT = 30.0, 225.0  # mean gray level (0-255) below / above: too dark / too bright
LOW_VARIANCE = 5.0  # gray standard deviation below: blank or nearly so
SMALL_SHARE = 0.5  # a short side below half the training size is upscaled 2x or more
IMBALANCE = 0.5  # smallest class under half the largest: accuracy hides the small one

Thumbs = Callable[[str | None, str], Thumb | None]


@dataclass(frozen=True)
class Check:
    name: str
    what: str
    rows: pd.DataFrame


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series(float("nan"), index=frame.index)


def near_duplicate_groups(dataset: pd.DataFrame) -> list[pd.DataFrame]:
    """Groups of more than one image (kept or in conflict), largest first."""
    if "near_duplicate_group" not in dataset:
        return []
    rows = dataset[dataset["status"].isin(["ok", "conflict"])].dropna(
        subset=["near_duplicate_group"]
    )
    groups = [g for _, g in rows.groupby("near_duplicate_group", sort=True) if len(g) > 1]
    return sorted(groups, key=len, reverse=True)


def checks(dataset: pd.DataFrame, image_size: int) -> list[Check]:
    """Each check's rows (one per source file), in the order the section shows them."""
    decoded = dataset[dataset["status"].isin(["ok", "conflict", "duplicate", "capped"])]
    short = pd.concat([_column(decoded, "width"), _column(decoded, "height")], axis=1).min(axis=1)
    brightness, contrast = _column(decoded, "brightness"), _column(decoded, "contrast")
    conflict = dataset[dataset["status"] == "conflict"]
    near = conflict["error"].fillna("").str.startswith("near-duplicate")
    small_side = int(image_size * SMALL_SHARE)
    duplicates = dataset[dataset["status"] == "duplicate"]
    return [
        Check("cross-class conflict (exact)", "the same bytes in two classes", conflict[~near]),
        Check("cross-class conflict (near)", "near-duplicates in two classes", conflict[near]),
        Check("exact duplicate", "same bytes again in one class", duplicates),
        Check(
            "small",
            f"short side under {small_side} px (training size {image_size})",
            decoded[short < small_side],
        ),
        Check("dark", f"mean gray level under {DARK:g}", decoded[brightness < DARK]),
        Check("bright", f"mean gray level over {BRIGHT:g}", decoded[brightness > BRIGHT]),
        Check(
            "low variance (blank)",
            f"gray std under {LOW_VARIANCE:g}",
            decoded[contrast < LOW_VARIANCE],
        ),
    ]


def balance(dataset: pd.DataFrame) -> dict[str, int]:
    kept = dataset[dataset["status"] == "ok"]
    return {str(k): int(v) for k, v in kept["label"].value_counts().sort_index().items()}


def health_rows(dataset: pd.DataFrame, image_size: int) -> list[dict[str, Any]]:
    """One row per check (for the Prefect table artifact): count and example files."""
    rows = [
        {"check": "near-duplicate groups", "count": len(groups), "examples": "; ".join(
            str(g["source_path"].iloc[0]) for g in groups[:EXAMPLES]
        )}
        for groups in [near_duplicate_groups(dataset)]
    ]  # fmt: skip
    for check in checks(dataset, image_size):
        examples = check.rows["source_path"].astype(str).head(EXAMPLES)
        rows.append(
            {"check": check.name, "count": len(check.rows), "examples": "; ".join(examples)}
        )
    counts = balance(dataset)
    detail = ", ".join(f"{k} {v}" for k, v in counts.items())
    rows.append({"check": "class balance", "count": len(counts), "examples": detail})
    return rows


def health_section(dataset: pd.DataFrame, image_size: int, thumbs: Thumbs) -> Section | None:
    """Counts with a few examples each; None without a dataset manifest."""
    if dataset.empty:
        return None
    section = Section("health", "Dataset health")
    groups = near_duplicate_groups(dataset)
    found = checks(dataset, image_size)
    counts = balance(dataset)
    smallest, largest = min(counts.values(), default=0), max(counts.values(), default=0)
    facts = [("near-duplicate groups", str(len(groups)))]
    facts += [(c.name, str(len(c.rows))) for c in found]
    facts.append(("class balance (smallest/largest)", f"{smallest}/{largest}"))
    section.blocks.append(Facts(facts))
    if groups:
        section.blocks.append(_groups_table(groups, thumbs))
    for check in found:
        if not check.rows.empty:
            section.blocks.append(_examples(check, thumbs))
    if largest and smallest < IMBALANCE * largest:
        section.blocks.append(
            Text(
                f"Classes are imbalanced ({smallest} vs {largest} kept images): accuracy mostly"
                " measures the large classes; look at per-class accuracy."
            )
        )
    rows = [[label, n] for label, n in counts.items()]
    section.blocks.append(Table(["class", "kept images"], rows, "Class balance"))
    if not groups and all(c.rows.empty for c in found):
        section.blocks.append(Text("No problems found by these checks."))
    return section


def _groups_table(groups: list[pd.DataFrame], thumbs: Thumbs) -> Table:
    rows = []
    for group in groups[:EXAMPLES]:
        paths = group["source_path"].astype(str).head(GROUP_THUMBS)
        pictures = [thumbs(p, PurePath(p).name) for p in paths]
        pictures += [None] * (GROUP_THUMBS - len(pictures))
        labels = ", ".join(sorted(group["label"].astype(str).unique()))
        splits = ", ".join(sorted(group["split"].dropna().astype(str).unique())) or "-"
        rows.append([len(group), labels, splits, *pictures])
    columns = ["images", "classes", "splits", *(f"image {i + 1}" for i in range(GROUP_THUMBS))]
    caption = (
        f"{min(len(groups), EXAMPLES)} of {len(groups)} near-duplicate groups (one split each)"
    )
    return Table(columns, rows, caption)


def _examples(check: Check, thumbs: Thumbs) -> Table:
    rows = [
        [thumbs(str(r.source_path), check.name), str(r.source_path), str(r.label), _detail(r)]
        for r in check.rows.head(EXAMPLES).itertuples()
    ]
    caption = f"{check.name}: {check.what} ({len(check.rows)} files; {len(rows)} shown)"
    return Table(["image", "file", "class", "detail"], rows, caption)


def _detail(row: Any) -> str:
    parts = []
    if isinstance(getattr(row, "error", None), str):
        parts.append(row.error)
    for name in ("width", "height", "brightness", "contrast"):
        value = getattr(row, name, None)
        if value is not None and not pd.isna(value):
            parts.append(f"{name} {value:.0f}")
    return "; ".join(parts)
