"""Near-duplicates: which perceptual hash and distance, and how fast grouping is.

threshold: for each shared mountain/forest photo make a JPEG re-encode (quality 75), an 80%
resize and a 94% centre crop; print, per distance, the share of copies within it of their
original (caught) and the share of originals within it of another original (merged: real
near-duplicates in the data plus false merges), for dHash and pHash, hashed as prepare does.
grouping: time close_pairs/group_labels on n synthetic hashes (random, plus planted copies
at 1-4 flipped bits), against comparing every pair on a subset.

    tar xzf ../shared/data/mountain-forest-train.tar.gz -C /tmp/mf
    PYTHONPATH=. python bench/bench_near_duplicates.py threshold /tmp/mf/mountain-forest/train
    PYTHONPATH=. python bench/bench_near_duplicates.py grouping --n 100000 --distance 8
"""

from __future__ import annotations

import argparse
import io
import platform
import subprocess
import time
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from tasks.prepare.near_duplicates import (
    DRAFT_SIZE,
    close_pairs,
    group_labels,
    image_hash,
    to_ints,
)


def cpu() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line]
    return names[0] if names else platform.processor()


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))  # a file, as prepare would read it


def variants(img: Image.Image) -> dict[str, Image.Image]:
    w, h = img.size
    cw, ch = round(w * 0.94), round(h * 0.94)
    left, top = (w - cw) // 2, (h - ch) // 2
    return {
        "reencode": _jpeg(img, 75),
        "resize80": _jpeg(img.resize((round(w * 0.8), round(h * 0.8)), Image.LANCZOS), 95),
        "crop94": _jpeg(img.crop((left, top, left + cw, top + ch)), 95),
    }


def hashes(img: Image.Image, kind: str) -> np.uint64:
    """pHash as prepare computes it; dHash on the same reduced decode."""
    if kind == "phash":
        return to_ints([image_hash(img)[0]])[0]
    if img.format == "JPEG":
        img.draft("L", DRAFT_SIZE)
    return to_ints([str(imagehash.dhash(img.convert("L")))])[0]


def threshold(folder: Path, limit: int, distances: list[int]) -> None:
    paths = sorted(folder.rglob("*.jpg"))[:limit]
    for kind in ("phash", "dhash"):
        originals, copies = [], {"reencode": [], "resize80": [], "crop94": []}
        for path in paths:
            with Image.open(path) as img:
                originals.append(hashes(img, kind))
            with Image.open(path) as img:
                for name, copy in variants(img.convert("RGB")).items():
                    copies[name].append(hashes(copy, kind))
        orig = np.array(originals, np.uint64)
        cross = np.bitwise_count(orig[:, None] ^ orig[None, :]).astype(int)
        np.fill_diagonal(cross, 99)
        nearest_other = cross.min(axis=1)
        print(f"\n{kind} on {len(paths)} photos of {folder}")
        print("distance " + " ".join(f"{n:>9}" for n in copies) + "   merged(originals)")
        for d in distances:
            caught = [
                np.mean(np.bitwise_count(orig ^ np.array(c, np.uint64)) <= d)
                for c in copies.values()
            ]
            merged = np.mean(nearest_other <= d)
            print(f"{d:>8} " + " ".join(f"{c:>9.3f}" for c in caught) + f"   {merged:.3f}")


def grouping(n: int, distance: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**64 - 1, n - n // 10, dtype=np.uint64, endpoint=True)
    planted = base[: n // 10].copy()
    for _ in range(4):  # up to 4 flipped bits per planted copy
        bit = rng.integers(0, 64, len(planted)).astype(np.uint64)
        planted ^= np.where(rng.random(len(planted)) < 0.7, np.uint64(1) << bit, np.uint64(0))
    hashes_ = np.concatenate([base, planted])
    started = time.perf_counter()
    labels = group_labels(hashes_, distance)
    seconds = time.perf_counter() - started
    groups = np.bincount(labels)
    m = 4000  # all pairs on a subset, to scale the quadratic cost
    sub = hashes_[:m]
    t0 = time.perf_counter()
    for i in range(m):  # one row at a time, as a pure n^2 scan would go
        np.bitwise_count(sub[i] ^ sub[i + 1 :])
    per_pair = (time.perf_counter() - t0) / (m * (m - 1) / 2)
    quadratic = per_pair * n * (n - 1) / 2
    print(f"CPU: {cpu()}")
    print(f"n={n} distance={distance}: grouped in {seconds:.2f} s;")
    print(f"  {len(groups)} groups, {(groups > 1).sum()} with >1 image (planted: {n // 10})")
    print(f"  all-pairs numpy scan estimate: {quadratic:.1f} s ({quadratic / seconds:.1f}x)")
    for k in (n // 4, n // 2):
        t0 = time.perf_counter()
        close_pairs(hashes_[:k], distance)
        print(f"  n={k}: {time.perf_counter() - t0:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("threshold")
    t.add_argument("folder", type=Path)
    t.add_argument("--limit", type=int, default=600)
    t.add_argument("--distances", type=int, nargs="+", default=[0, 2, 4, 6, 8, 10, 12, 14])
    g = sub.add_parser("grouping")
    g.add_argument("--n", type=int, default=100_000)
    g.add_argument("--distance", type=int, default=8)
    g.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.what == "threshold":
        threshold(args.folder, args.limit, args.distances)
    else:
        grouping(args.n, args.distance, args.seed)


if __name__ == "__main__":
    main()
