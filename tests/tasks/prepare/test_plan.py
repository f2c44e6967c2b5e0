"""plan() on generated folders: the same rows, values and types as the pandas implementation
it replaced (a digest of its output, recorded before the rewrite), over every status."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from tasks.prepare import plan
from tasks.prepare.columns import SourceUrls, inspection_table

# sha256 of plan()'s output over CASES generated cases (rows, values and dtypes), as the
# row-by-row pandas plan() wrote them before the columnar rewrite.
CASES = 120
DIGEST = "daaa6c8400a7bdc127bb67ca770025cc3deccc9065a75d66e3354965adf2a98a"


def generated(seed: int) -> tuple[pd.DataFrame, pa.Table, list[str], plan.SplitSpec, dict | None]:
    """A folder listing with its inspection: shared bytes (duplicates, conflicts), near
    copies, failed and unsupported files, flat hashes, missing colours; a random spec."""
    r = random.Random(seed)
    labels = ["cat", "dog", "emu"][: r.randint(1, 3)]
    n = r.randint(0, 60)
    pool = [f"{r.getrandbits(256):064x}" for _ in range(max(1, n // r.randint(1, 4)))]
    bases = [r.getrandbits(64) for _ in range(5)]
    listed, infos = [], []
    for i in range(n):
        label, ext = r.choice(labels), r.choice([".jpg", ".png", ".JPG", ".txt", ".gif", ""])
        listed.append((f"/src/{label}/f{i:03d}{ext}", label))
        infos.append(_inspection(r, r.choice(pool), bases))
    listed.sort(key=lambda row: (row[1], row[0]))
    files = pd.DataFrame(
        {"source_path": [p for p, _ in listed], "label": [lb for _, lb in listed]}
    ).assign(size=1, mtime_ns=1)
    spec = plan.SplitSpec(
        seed=r.randint(0, 9), val_fraction=r.choice([0.2, 0.5]),
        test_fraction=r.choice([0.0, 0.2]), max_per_class=r.choice([None, None, 1, 3, 10]),
        near_duplicate_distance=r.choice([None, 6, 10]),
    )  # fmt: skip
    flagged = r.sample(pool, min(len(pool), r.randint(0, 3)))
    return (
        files,
        inspection_table(infos),
        sorted(labels),
        spec,
        {s: f"flagged {s[:4]}" for s in flagged} or None,
    )


def _inspection(r: random.Random, sha: str, bases: list[int]) -> dict:
    info: dict = {"sha256": sha}
    k = r.random()
    if k < 0.1:
        return info | {"status": "corrupt", "error": "bad bytes"}
    if k < 0.15:
        return info | {"error": "no status given"}
    if k < 0.2:
        return info | {"status": "unsupported", "error": "too many pixels", "width": 9000}
    phash = r.choice(bases)
    for _ in range(r.randint(0, 8)):
        phash ^= 1 << r.randrange(64)
    centre = phash ^ (1 << r.randrange(64))
    if r.random() < 0.1:
        phash = 0xF  # too few bits set to match on
    info |= {"width": r.randint(1, 99), "height": r.randint(1, 99), "phash": f"{phash:016x}",
             "phash_centre": f"{centre:016x}", "brightness": r.random() * 255,
             "contrast": r.random() * 50}  # fmt: skip
    if r.random() < 0.9:
        info["mean_color"] = [r.choice([10.0, 12.0, 200.0]) for _ in range(3)]
    return info


def digest(seeds: range) -> str:
    h = hashlib.sha256()
    for seed in seeds:
        files, inspected, names, spec, excluded = generated(seed)
        rows = plan.plan(files, inspected, names, Path("/ds"), spec, ".jpg", excluded)
        h.update(str(rows.dtypes.to_dict()).encode() + rows.to_csv().encode())
    return h.hexdigest()


def test_plan_keeps_the_rows_of_the_implementation_it_replaced():
    assert digest(range(CASES)) == DIGEST


def test_plan_reads_an_inspection_split_in_chunks_as_one():
    """Inspection tables come a batch at a time (chunks with offsets): the same plan."""
    for seed in range(40):
        files, inspected, names, spec, excluded = generated(seed)
        k = seed % 7
        chunked = pa.concat_tables(
            [inspected.slice(0, k), inspected.slice(k, 5), inspected.slice(k + 5)]
        )
        args = (names, Path("/ds"), spec, ".jpg", excluded)
        pd.testing.assert_frame_equal(
            plan.plan(files, chunked, *args), plan.plan(files, inspected, *args)
        )


@pytest.mark.parametrize("chunk", [1, 2, 16_384])  # hashes looked up a chunk at a time
def test_source_urls_take_the_last_scrape_of_each_hash_and_null_for_none(monkeypatch, chunk):
    monkeypatch.setattr(SourceUrls, "LOOKUP_CHUNK", chunk)
    parts = [
        pa.table({"sha256": ["a" * 64, "b" * 64], "url": ["http://x.test/1", "http://x.test/2"]}),
        pa.table({"sha256": ["a" * 64, "c" * 63], "url": ["http://x.test/again", "u"]}),
    ]
    rows = pa.chunked_array([["b" * 64, "a" * 64], ["c" * 64, "a" * 64]], pa.large_string())
    urls = SourceUrls(parts, rows)
    found = list(urls.batch(0, 4))
    assert found[:2] == ["http://x.test/2", "http://x.test/again"] and found[3] == found[1]
    assert pd.isna(found[2])  # never scraped
    assert urls.batch(1, 3)[0] == "http://x.test/again"
    assert pd.isna(SourceUrls([], rows).batch(0, 4)).all()
