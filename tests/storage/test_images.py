"""The image gate: accepted formats only, the pixel budget judged from headers (every ICO
frame, a WebP's canvas) and a JPEG's scans capped, before Pillow decodes a single pixel."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from storage.files import IMAGE_EXTENSIONS, MAX_PIXELS
from storage.images import (
    DECODE_FORMATS,
    MAX_JPEG_SCANS,
    MAX_JPEG_SEGMENTS,
    ImageBudgetError,
    UnacceptedImageError,
    jpeg_scans,
    open_image,
    pixel_budget,
)
from tests.http_server import bilevel_png
from tests.image_attacks import (
    hostile_jpeg,
    ico,
    lying_ico,
    lying_webp,
    pillow_decodes,
    progressive_jpeg,
    small_png,
    with_frame_size,
)

ROOT = Path(__file__).resolve().parents[2]


def decoded(source, **gate) -> np.ndarray:
    with open_image(source, **gate) as image:
        return np.asarray(image.convert("RGB"))


def test_the_formats_are_those_of_the_one_extension_list():
    named = {Image.registered_extensions()[e] for e in IMAGE_EXTENSIONS}
    assert named == set(DECODE_FORMATS)


def test_a_jpeg_with_hundreds_of_scans_is_refused_before_pillow_decodes():
    data = hostile_jpeg(repeats=800)
    scans, _, size = jpeg_scans(data)
    assert len(data) < 20_000 and (scans, size) == (810, (64, 48))
    assert jpeg_scans(data, max_scans=100)[0] == 101  # the walk stops past the cap
    refusal = pytest.raises(ImageBudgetError, match="more than 100 scans")
    with pillow_decodes() as loads, refusal as refused:
        decoded(data)
    assert loads == [] and isinstance(refused.value, Image.DecompressionBombError)
    assert (refused.value.format, refused.value.size) == ("JPEG", (64, 48))
    # Up to the cap it opens and decodes, as Pillow alone decodes it (the counter counts).
    fine = hostile_jpeg(repeats=MAX_JPEG_SCANS - 10)
    with pillow_decodes() as loads:
        same = decoded(fine)
    assert np.array_equal(same, np.asarray(Image.open(io.BytesIO(fine)).convert("RGB")))
    assert "ImageFile.load" in loads
    with pytest.raises(ImageBudgetError, match="scans"):
        decoded(fine, max_scans=MAX_JPEG_SCANS - 1)


def test_ordinary_jpegs_count_their_real_scans():
    baseline = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(baseline, "JPEG")
    assert jpeg_scans(baseline.getvalue())[::2] == (1, (40, 30))
    assert jpeg_scans(progressive_jpeg((33, 17)))[::2] == (10, (33, 17))
    gray = io.BytesIO()
    Image.new("L", (20, 20), 90).save(gray, "JPEG", progressive=True)
    assert jpeg_scans(gray.getvalue())[0] == 6
    # An EXIF thumbnail (a JPEG inside APP1) holds scans of its own: not counted.
    exif = Image.Exif()
    exif[0x010E] = "\xff\xda" * 50
    with_exif = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(with_exif, "JPEG", exif=exif)
    assert jpeg_scans(with_exif.getvalue())[0] == 1


def test_a_phone_cameras_mpo_opens_as_a_jpeg():
    out = io.BytesIO()
    frames = [Image.new("RGB", (40, 30), c) for c in ("red", "blue")]
    frames[0].save(out, "MPO", save_all=True, append_images=frames[1:])
    assert jpeg_scans(out.getvalue())[0] == 1  # the first picture's: Pillow decodes that one
    with open_image(out.getvalue(), formats=("JPEG",)) as image:
        assert (image.format, image.n_frames) == ("MPO", 2)


def test_a_jpeg_of_countless_empty_segments_is_refused_after_a_few_thousand():
    base = progressive_jpeg()
    data = base[:2] + b"\xff\xe1\x00\x02" * 100_000 + base[2:]  # 400 KB of empty APP1s
    assert jpeg_scans(data, max_segments=MAX_JPEG_SEGMENTS)[1] == MAX_JPEG_SEGMENTS + 1
    with pytest.raises(ImageBudgetError, match=f"more than {MAX_JPEG_SEGMENTS} segments"):
        decoded(data)
    assert decoded(base[:2] + b"\xff\xe1\x00\x02" * 1000 + base[2:]).shape == (48, 64, 3)


def test_an_ico_lying_about_its_frame_is_refused_before_its_plugin_decodes(tmp_path):
    path = tmp_path / "favicon.ico"
    path.write_bytes(lying_ico(12000))
    with pillow_decodes() as loads, pytest.raises(ImageBudgetError, match="12000x12000"):
        decoded(path)
    assert loads == []
    # Pillow alone decodes the embedded PNG inside Image.open (the counter sees it).
    with pillow_decodes() as loads, pytest.warns(UserWarning, match="expected size"):
        Image.open(io.BytesIO(lying_ico(300))).close()
    assert "IcoImageFile.load" in loads


def test_an_honest_ico_opens_and_decodes_its_largest_frame():
    data = ico([((16, 16), small_png((16, 16))), ((48, 48), small_png((48, 48)))])
    with open_image(data) as image:
        assert (image.format, image.size) == ("ICO", (48, 48))
    assert decoded(data)[0, 0].tolist() == [10, 200, 30]


def test_a_webp_canvas_over_the_budget_is_refused_from_its_header():
    with pillow_decodes() as loads, pytest.raises(ImageBudgetError, match="13000x13000"):
        decoded(lying_webp((13000, 13000)))
    assert loads == []
    assert decoded(lying_webp((16, 16))).shape == (16, 16, 3)  # the honest canvas opens


def test_formats_outside_the_list_are_never_opened(tmp_path):
    gif = io.BytesIO()
    Image.new("P", (8, 8)).save(gif, "GIF")
    with pytest.raises(UnacceptedImageError, match=r"accepted format \(PNG\)"):
        decoded(gif.getvalue(), formats=("PNG",))
    with pytest.raises(UnacceptedImageError):
        decoded(b"<html>not a picture</html>")
    with pillow_decodes() as loads, pytest.raises(UnacceptedImageError):
        decoded(lying_ico(), formats=("JPEG", "PNG"))  # the ICO plugin never runs
    assert loads == []


def test_the_pixel_budget_is_pillows_limit_at_most(monkeypatch):
    assert pixel_budget() == MAX_PIXELS
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a documented Pillow setting
    assert pixel_budget(10**9) == 1000
    refused = pytest.raises(ImageBudgetError, match="over max_pixels 1000")
    with refused, pytest.warns(Image.DecompressionBombWarning):  # Pillow warns, the gate refuses
        decoded(small_png((40, 40)), max_pixels=10**9)


# --- properties: the gate's decision is the budget's, whatever the headers say ---------------

_BASE = progressive_jpeg((16, 16))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=st.integers(1, 65535),
    height=st.integers(1, 65535),
    extra=st.integers(0, 2 * MAX_JPEG_SCANS),
    max_pixels=st.integers(1, 10**9),
)
def test_a_jpeg_is_refused_exactly_when_over_a_budget(width, height, extra, max_pixels):
    start = _BASE.rindex(b"\xff\xda")
    end = _BASE.rindex(b"\xff\xd9")
    data = with_frame_size(_BASE[:end] + _BASE[start:end] * extra + _BASE[end:], (width, height))
    over = width * height > pixel_budget(max_pixels) or 10 + extra > MAX_JPEG_SCANS
    with pillow_decodes() as loads:
        try:
            with open_image(data, max_pixels=max_pixels) as image:
                assert image.size == (width, height)
            refused = False
        except ImageBudgetError:
            refused = True
    assert refused == over and loads == []


_frame = st.tuples(st.integers(1, 300), st.integers(1, 300))


@pytest.mark.filterwarnings("ignore:Image was not the expected size")  # the ICO plugin's
@settings(max_examples=80, deadline=None)
@given(frames=st.lists(st.tuples(_frame, _frame), min_size=1, max_size=6))
def test_an_ico_is_refused_exactly_when_a_frame_is_over_the_budget(frames):
    # Each frame: (what the directory claims, what the embedded PNG's header says).
    data = ico([(claim, bilevel_png(*real)) for claim, real in frames])
    budget = 150 * 150
    try:
        with open_image(data, max_pixels=budget):
            pass
        refused = False
    except ImageBudgetError:
        refused = True
    assert refused == any(w * h > budget for _, (w, h) in frames)


_SEGMENT = st.one_of(
    st.tuples(st.just("app"), st.binary(max_size=40)),  # may hold 0xff 0xda: not a scan
    st.tuples(st.just("scan"), st.binary(max_size=60)),  # entropy data, stuffed as JPEG does
    st.tuples(st.just("junk"), st.binary(max_size=20).map(lambda b: b.replace(b"\xff", b""))),
)


@settings(max_examples=300, deadline=None)
@given(segments=st.lists(_SEGMENT, max_size=30), trailing=st.binary(max_size=30))
def test_scans_are_counted_whatever_the_segments_and_entropy_data_hold(segments, trailing):
    out, scans = b"\xff\xd8", 0
    for kind, body in segments:
        if kind == "app":  # fill bytes may precede any marker
            out += b"\xff\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body
        elif kind == "scan":
            scans += 1
            stuffed = body.replace(b"\xff", b"\xff\x00") + b"\xff\xd3" + b"\x12"  # a restart
            out += b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + stuffed
        else:
            out += body  # garbage between segments, as libjpeg skips it
    out += b"\xff\xd9" + trailing.replace(b"\xff", b"") + b"\xff\xda"  # after EOI: ignored
    assert jpeg_scans(out)[0] == scans


# --- memory: a fresh process that meets the attacks ----------------------------------------

RSS_SCRIPT = textwrap.dedent(
    """
    import json
    from storage.images import open_image
    from tasks.scrape.images import check_image
    from tests.image_attacks import hostile_jpeg, lying_ico, lying_webp
    results = []
    for data in (lying_ico(12000), lying_webp((13000, 13000)), hostile_jpeg(repeats=800)):
        try:
            with open_image(data) as image:
                image.load()
            results.append("decoded")
        except Exception as e:
            results.append(type(e).__name__)
        results.append(check_image(data, 1).status)
    status = open("/proc/self/status").read()  # this process's own peaks: resident, virtual
    def mb(field):
        return int(status.split(field + ":")[1].split()[0]) / 1024
    print(json.dumps({"results": results, "rss_mb": mb("VmHWM"), "vm_mb": mb("VmPeak")}))
    """
)


def test_the_attacks_cost_a_fresh_process_no_pixel_memory():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT], capture_output=True, text=True, env=env, cwd=ROOT,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["results"] == [
        "ImageBudgetError", "not_image", "ImageBudgetError", "too_large",
        "ImageBudgetError", "too_large",
    ]  # fmt: skip
    # Decoded, the ICO alone is 144 MB (1-bit, a byte per pixel) and the WebP 2.6 GB; merely
    # opened, the WebP reserves its canvas twice (1.3 GB of address space, untouched).
    assert out["rss_mb"] < 100 and out["vm_mb"] < 500, out


def test_a_bilevel_png_over_the_budget_is_refused_from_its_header():
    with pillow_decodes() as loads, pytest.raises(ImageBudgetError, match="9400x9400"):
        decoded(bilevel_png(9400, 9400))
    assert loads == []
