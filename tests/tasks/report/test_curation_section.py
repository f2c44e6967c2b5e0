"""The report's Curation section, from real `curation` rows written through storage/."""

from __future__ import annotations

import json
from pathlib import Path

from tasks.report.curation import evidence
from tasks.report.tasks import build_report
from tests.tasks.curate.test_curate import make_folder
from tests.tasks.report.test_report import RUN, runs, write


def test_curation_section_counts_labels_and_shows_the_flagged_images(tmp_path, data_dir):
    source, planted = make_folder(tmp_path / "src", per_class=3, flips=1)
    rows = []
    for path in sorted(source.rglob("*.png")):
        wrong = path.as_posix() in planted
        believed = ("blue" if path.parent.name == "red" else "red") if wrong else path.parent.name
        rows.append(
            {
                "run_id": RUN, "path": path.as_posix(), "sha256": path.stem * 8,
                "label": path.parent.name, "check": "label_issues",
                "verdict": "suspect_label" if wrong else "ok",
                "evidence": json.dumps(
                    {"given": path.parent.name, "p_given": 0.1, "believed": believed,
                     "p_believed": 0.9}
                ),
                "suggested_label": believed if wrong else None,
                "probability": 0.9 if wrong else 0.8, "model": "pixels-8x8",
            }
        )  # fmt: skip
    rows.append(rows[0] | {"check": "on_topic", "verdict": "off_topic", "evidence": "[]"})
    write("curation", rows, data_dir)
    built = build_report.fn(runs(), str(data_dir), "Curated", sample=2)
    assert built.sections == ["curation"]
    facts = dict(built.facts["Curation"])
    assert facts["images checked"] == "6" and facts["flagged"] == "2"
    page = Path(built.html_path).read_text()
    markdown = Path(built.markdown_path).read_text()
    assert "looks like blue (0.90); given red" in page and "--exclude-curation" in markdown
    assert page.count("<img") >= 3  # a thumbnail per flagged image shown
    assert "| red | label\\_issues | 2 | 0 | 1 |" in markdown  # ok, off_topic, suspect_label
    assert "| blue | on\\_topic | 0 | 1 | 0 |" in markdown


def test_evidence_reads_both_checks_and_tolerates_junk():
    on_topic = json.dumps([{"class": "volcano", "p": 0.91}, {"class": "alp", "p": 0.05}])
    assert evidence(on_topic) == "volcano 0.91, alp 0.05"
    assert evidence("not json") == "not json" and evidence(None) == ""
