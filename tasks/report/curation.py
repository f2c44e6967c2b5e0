"""The report's Curation section: what curate_images flagged, per label and check, and a review
gallery (thumbnail, label, verdict, evidence) so a person can confirm at a glance."""

from __future__ import annotations

import json

import pandas as pd

from tasks.report.document import Facts, Section, Table, Text
from tasks.report.sections import Thumbs

FLAGS = ("off_topic", "suspect_label")


def curation_section(curation: pd.DataFrame, thumbs: Thumbs, shown: int = 12) -> Section | None:
    if curation.empty:
        return None
    flagged = curation[curation["verdict"].isin(FLAGS)]
    section = Section("curation", "Curation")
    section.blocks.append(
        Facts(
            [
                ("images checked", str(curation["path"].nunique())),
                ("flagged", str(flagged["path"].nunique())),
                ("checks", ", ".join(sorted(curation["check"].unique()))),
            ]
        )
    )
    counts = curation.pivot_table(
        index=["label", "check"], columns="verdict", values="path", aggfunc="count", fill_value=0
    )
    verdicts = [v for v in ("ok", *FLAGS, "error") if v in counts.columns]
    rows = [
        [label, check, *(int(r[v]) for v in verdicts)] for (label, check), r in counts.iterrows()
    ]
    section.blocks.append(Table(["label", "check", *verdicts], rows, "Images per label and check"))
    if flagged.empty:
        section.blocks.append(Text("No image was flagged."))
        return section
    # Most confident flags first: those are the ones a person should look at first.
    review = flagged.sort_values("probability", ascending=False).head(shown)
    gallery = [
        [thumbs(r.path, f"{r.label}: {r.verdict}"), r.label, r.verdict, evidence(r.evidence)]
        for r in review.itertuples()
    ]
    caption = f"{len(review)} of {len(flagged)} flagged images, most confident first"
    section.blocks.append(Table(["image", "label", "verdict", "evidence"], gallery, caption))
    section.blocks.append(
        Text(
            "Nothing was moved or deleted. pixelpipe prepare --exclude-curation RUN (or the"
            " pipeline's --curate exclude) leaves the flagged images out of the dataset."
        )
    )
    return section


def evidence(text: str | None) -> str:
    """The evidence column in words: the classifier's top classes, or the label it believes."""
    try:
        data = json.loads(text or "")
    except ValueError:
        return text or ""
    if isinstance(data, list):  # on-topic: [{"class": ..., "p": ...}, ...]
        return ", ".join(f"{d['class']} {d['p']:.2f}" for d in data[:3])
    if isinstance(data, dict) and "believed" in data:
        return f"looks like {data['believed']} ({data['p_believed']:.2f}); given {data['given']}"
    return str(data)
