"""Near-duplicate images: a 64-bit perceptual hash per image, and groups of hashes within a
Hamming distance, found without comparing every pair.

Hash: imagehash's pHash (64 signs of the low 8x8 DCT coefficients of a 32x32 grayscale) of
the whole image and of its centre 95%, on a reduced decode (JPEG draft), so it costs little
beside reading the file; two images match when any of their hashes are within the distance.
bench/bench_near_duplicates.py on the 2,880 shared photos (BENCHMARKS.md): at distance 6 this
catches every re-encode and 80% resize and 99.9% of 94% centre crops, merging no different
photos; whole-image pHash or dHash alone catch 62-68% of those crops there, and need ~10,
where they start merging different photos.

A pHash compares 64 coefficients with their median, so a photo's hash has 32 bits set (all
680 shared photos checked); far fewer means ties: an image with next to no texture (flat, or
a few flat regions) whose hash says little. It joins no group (MIN_HASH_BITS); the health
report lists it as low-variance. pHash sees gray levels only, so pictures that differ in
colour alone (a red and a blue version of one layout, common in generated data) hash alike:
a pair whose mean colours differ by more than COLOR_TOLERANCE in a channel is no match.

Grouping: multi-index hashing. Split each hash into 4 bands of 16 bits; two hashes within d
bits differ in some band by at most d // 4 bits (pigeonhole), so each band is probed with
every flip of <= d // 4 bits (F = 17 masks for d = 4..7, 137 for 8..11) through a bucket
table. Cost O(4 F h (1 + h / 2^16)) for h = 2n hashes: linear while h is below ~2^16, then
4 F h^2 / 2^16, against the h^2 / 2 comparisons of a full scan (100,000 images: 8.6 s vs an
extrapolated 79 s on a busy 2-core EPYC). Groups are the connected components of
the close pairs (single linkage).
"""

from __future__ import annotations

from itertools import combinations, product

import imagehash
import numpy as np
from PIL import Image, ImageOps

BANDS, BAND_BITS = 4, 16
DRAFT_SIZE = (64, 64)  # decode a JPEG at >= this many pixels: the hash needs 32x32
COLOR_TOLERANCE = 24.0  # 0-255 per channel; re-encodes, resizes and crops move it a few levels
MIN_HASH_BITS = 24
# Items looked up at a time: the candidate pairs of a chunk (a few per item below 2^16 hashes,
# more above) are the grouping's transient memory, bounded by this instead of by the images.
QUERY_CHUNK = 1 << 14
# A second hash of the centre 95% matches a copy cropped by ~5%, which the whole-image hash
# of a spatially shifted picture often misses (the measured catch rates: BENCHMARKS.md).
CENTRE_CROP = 0.95
GRAY = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as Pillow's convert("L")


def image_hash(img: Image.Image) -> tuple[str, str, np.ndarray]:
    """The 16-hex-digit pHashes of an opened image (opened through the image gate,
    storage/images.py, as inspect_file does) and of its centre CENTRE_CROP, and its 32x32 RGB
    reduction (float32: mean colour, brightness, contrast); on a reduced decode, EXIF
    orientation applied."""
    if img.format == "JPEG":
        img.draft("RGB", DRAFT_SIZE)  # DCT scaling: decodes 1/8 of the pixels of a big photo
    rgb = ImageOps.exif_transpose(img).convert("RGB")
    w, h = rgb.size
    dx, dy = w * (1 - CENTRE_CROP) / 2, h * (1 - CENTRE_CROP) / 2
    centre = rgb.resize((64, 64), Image.Resampling.BILINEAR, box=(dx, dy, w - dx, h - dy))
    small = np.asarray(rgb.resize((32, 32), Image.Resampling.BOX), dtype=np.float32)
    return str(imagehash.phash(rgb, hash_size=8)), str(imagehash.phash(centre, 8)), small


def to_ints(hashes: list[str]) -> np.ndarray:
    return np.array([int(h, 16) for h in hashes], dtype=np.uint64)


def informative(phash: str) -> bool:
    """Whether a hash comes from an image with enough texture to match on."""
    return int(phash, 16).bit_count() >= MIN_HASH_BITS


def _flip_masks(distance: int) -> np.ndarray:
    radius = min(distance // BANDS, BAND_BITS)
    masks = [
        sum(1 << b for b in bits)
        for r in range(radius + 1)
        for bits in combinations(range(BAND_BITS), r)
    ]
    return np.array(masks, dtype=np.uint64)


def _pairs_in_band(
    keys: np.ndarray, starts: np.ndarray, order: np.ndarray, mask: np.uint64, first: int
):
    """(i, j), i < j, whose band keys differ by exactly `mask`, for the QUERY_CHUNK items from
    `first`: a bucket lookup per item."""
    query = (keys[first : first + QUERY_CHUNK] ^ mask).astype(np.int64)
    lo, hi = starts[query], starts[query + 1]
    counts = hi - lo
    i = np.repeat(np.arange(first, first + len(query)), counts)
    j = order[np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(len(i))]
    keep = i < j
    return i[keep], j[keep]


def close_pairs(hashes: np.ndarray, distance: int, colors: np.ndarray | None = None) -> np.ndarray:
    """(k, 2) index pairs i < j whose hashes are within `distance` bits (and, given (n, 3)
    mean colours, whose colours are within COLOR_TOLERANCE)."""
    found = [np.zeros((0, 2), np.int64)]
    band_mask = np.uint64((1 << BAND_BITS) - 1)
    for band in range(BANDS):
        keys = (hashes >> np.uint64(band * BAND_BITS)) & band_mask
        # Counting sort: bucket b holds order[starts[b]:starts[b + 1]].
        order = np.argsort(keys, kind="stable")
        starts = np.zeros((1 << BAND_BITS) + 1, np.int64)
        starts[1:] = np.cumsum(np.bincount(keys.astype(np.int64), minlength=1 << BAND_BITS))
        for mask, first in product(_flip_masks(distance), range(0, len(keys), QUERY_CHUNK)):
            i, j = _pairs_in_band(keys, starts, order, mask, first)
            near = np.bitwise_count(hashes[i] ^ hashes[j]) <= distance
            if colors is not None:
                near &= np.abs(colors[i] - colors[j]).max(axis=1) <= COLOR_TOLERANCE
            found.append(np.stack([i[near], j[near]], axis=1))
    return np.unique(np.concatenate(found), axis=0)


def group_labels(hashes: np.ndarray, distance: int, colors: np.ndarray | None = None) -> np.ndarray:
    """A component number per hash: equal numbers are one near-duplicate group."""
    n = len(hashes)
    if n == 0:
        return np.zeros(0, np.int64)
    return _components(close_pairs(hashes, distance, colors), n)


def image_groups(hashes: np.ndarray, colors: np.ndarray, distance: int, n: int) -> np.ndarray:
    """A component per image from 2n hashes: images 0..n-1 whole, then the same n centres.
    Two images are near when any hash of one is within `distance` of any hash of the other."""
    pairs = close_pairs(hashes, distance, colors) % n
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]  # an image's own centre
    return _components(pairs, n)


def _components(pairs: np.ndarray, n: int) -> np.ndarray:
    """The connected component of each of n nodes, given the edges as index pairs."""
    # SciPy is imported here, not at the top: prepare's pool workers import this module
    # (through render.py) and never group; SciPy would cost each of them ~0.3 CPU-s at start.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]
