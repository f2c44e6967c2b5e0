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
    image_groups,
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


def hashes(img: Image.Image, kind: str) -> np.ndarray:
    """pHash as prepare computes it (whole image, centre); dHash on the same reduced decode."""
    if kind == "phash":
        return to_ints(list(image_hash(img)[:2]))
    if kind == "phash-whole":
        return to_ints([image_hash(img)[0]] * 2)
    if img.format == "JPEG":
        img.draft("L", DRAFT_SIZE)
    return to_ints([str(imagehash.dhash(img.convert("L")))] * 2)


def pair_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest distance between any hash of a[i] and any of b[j] (arrays (n, 2), (m, 2))."""
    pairs = [np.bitwise_count(a[:, None, p] ^ b[None, :, q]) for p in (0, 1) for q in (0, 1)]
    return np.minimum.reduce(pairs).astype(int)


def threshold(folder: Path, limit: int, distances: list[int]) -> None:
    paths = sorted(folder.rglob("*.jpg"))[:limit]
    for kind in ("phash", "phash-whole", "dhash"):
        originals, copies = [], {"reencode": [], "resize80": [], "crop94": []}
        for path in paths:
            with Image.open(path) as img:
                originals.append(hashes(img, kind))
            with Image.open(path) as img:
                for name, copy in variants(img.convert("RGB")).items():
                    copies[name].append(hashes(copy, kind))
        orig = np.array(originals, np.uint64)
        cross = pair_distances(orig, orig)
        np.fill_diagonal(cross, 99)
        nearest_other = cross.min(axis=1)
        print(f"\n{kind} on {len(paths)} photos of {folder}")
        print("distance " + " ".join(f"{n:>9}" for n in copies) + "   merged(originals)")
        for d in distances:
            caught = [
                np.mean(np.diagonal(pair_distances(orig, np.array(c, np.uint64))) <= d)
                for c in copies.values()
            ]
            merged = np.mean(nearest_other <= d)
            print(f"{d:>8} " + " ".join(f"{c:>9.3f}" for c in caught) + f"   {merged:.3f}")


def grouping(n: int, distance: int, seed: int) -> None:
    """n images, two hashes each (whole, centre) as prepare groups them; a tenth are copies
    of another image with 1-4 bits flipped in both hashes."""
    rng = np.random.default_rng(seed)
    whole = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    centre = whole ^ rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    colors = rng.uniform(0, 255, (n, 3)).astype(np.float32)
    copies = n // 10
    for hashes in (whole, centre):
        hashes[-copies:] = hashes[:copies]
        for _ in range(4):  # up to 4 flipped bits per planted copy
            bit = rng.integers(0, 64, copies).astype(np.uint64)
            flip = np.where(rng.random(copies) < 0.7, np.uint64(1) << bit, np.uint64(0))
            hashes[-copies:] ^= flip
    colors[-copies:] = colors[:copies]
    print(f"CPU: {cpu()}")
    for k in (n // 4, n // 2, n):
        hashes = np.concatenate([whole[:k], centre[:k]])
        started = time.perf_counter()
        labels = image_groups(hashes, np.concatenate([colors[:k]] * 2), distance, k)
        seconds = time.perf_counter() - started
        multi = int((np.bincount(labels) > 1).sum())
        print(f"n={k} images ({2 * k} hashes), distance {distance}: {seconds:.2f} s,", end=" ")
        print(f"{multi} groups of >1 image")
    m = 4000  # every pair on a subset, to scale the quadratic cost to n
    sub = np.concatenate([whole[:m], centre[:m]])
    t0, close = time.perf_counter(), 0
    for i in range(len(sub)):  # one row at a time, as a plain all-pairs scan goes
        close += int(np.count_nonzero(np.bitwise_count(sub[i] ^ sub[i + 1 :]) <= distance))
    per_pair = (time.perf_counter() - t0) / (len(sub) * (len(sub) - 1) / 2)
    print(f"all-pairs numpy scan of n={n} ({2 * n} hashes), extrapolated from {m}:", end=" ")
    print(f"{per_pair * 2 * n * (2 * n - 1) / 2:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("threshold")
    t.add_argument("folder", type=Path)
    t.add_argument("--limit", type=int, default=600)
    t.add_argument("--distances", type=int, nargs="+", default=[0, 2, 4, 6, 8, 10, 12, 14])
    g = sub.add_parser("grouping")
    g.add_argument("--n", type=int, default=100_000)
    g.add_argument("--distance", type=int, default=6)
    g.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.what == "threshold":
        threshold(args.folder, args.limit, args.distances)
    else:
        grouping(args.n, args.distance, args.seed)


if __name__ == "__main__":
    main()
