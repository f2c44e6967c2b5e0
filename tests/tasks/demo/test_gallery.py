import io
import re
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from tasks.demo.gallery import (
    CLASSES,
    FULL_SIZE,
    THUMB_SIZE,
    GalleryServer,
    build_gallery,
    draw_forest,
    draw_mountain,
    generate_pictures,
)


def edge_density(image: Image.Image) -> float:
    """Share of pixels with a strong left-right step: trunks and tree outlines, not sky."""
    gray = np.asarray(image, float).mean(axis=2)
    return float((np.abs(np.diff(gray, axis=1)) > 12).mean())


def test_one_simple_statistic_separates_the_classes():
    # Fit a threshold on one draw and score it on fresh pictures: a classes-by-construction
    # check that the pictures carry the label in what they show (not in a solid colour).
    fit, held_out = np.random.default_rng(123), np.random.default_rng(456)
    mountains = np.median([edge_density(draw_mountain(fit)) for _ in range(40)])
    forests = np.median([edge_density(draw_forest(fit)) for _ in range(40)])
    assert mountains < forests
    threshold = (mountains + forests) / 2
    right = sum(edge_density(draw_mountain(held_out)) < threshold for _ in range(60))
    right += sum(edge_density(draw_forest(held_out)) >= threshold for _ in range(60))
    assert right / 120 >= 0.85, right / 120


def test_pictures_are_varied_not_solid_colours():
    rng = np.random.default_rng(7)
    for draw in (draw_mountain, draw_forest):
        arrays = [np.asarray(draw(rng), float) for _ in range(10)]
        assert all(a.shape == (FULL_SIZE[1], FULL_SIZE[0], 3) for a in arrays)
        # Within a picture: many distinct colours, large spread.
        assert min(a.std(axis=(0, 1)).mean() for a in arrays) > 10
        # Across pictures: the mean colours differ from one picture to the next.
        means = np.array([a.mean(axis=(0, 1)) for a in arrays])
        assert means.std(axis=0).max() > 5


def test_generation_is_deterministic_per_seed(tmp_path):
    a = generate_pictures(tmp_path / "a", 3, seed=1)
    b = generate_pictures(tmp_path / "b", 3, seed=1)
    c = generate_pictures(tmp_path / "c", 3, seed=2)
    assert sorted(a) == sorted(CLASSES)
    first = [p.read_bytes() for p in a["forest"]]
    assert first == [p.read_bytes() for p in b["forest"]]
    assert first != [p.read_bytes() for p in c["forest"]]


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], b""


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    site = build_gallery(tmp_path_factory.mktemp("site"), per_class=10, per_page=4)
    with GalleryServer(site.site_dir) as server:
        yield site, server.url


def test_gallery_pages_use_every_markup_form_and_chain_with_rel_next(gallery):
    site, url = gallery
    assert site.pages_per_class == 3 and site.first_pages["mountain"] == "mountain/page-1.html"
    status, ctype, body = get(url + "mountain/page-1.html")
    page = body.decode()
    assert status == 200 and ctype.startswith("text/html")
    assert '<a href="full/mountain-000.jpg"><img src="thumb/mountain-000.jpg"' in page
    assert 'srcset="thumb/mountain-001.jpg 56w, full/mountain-001.jpg 160w"' in page
    assert 'src="../static/spacer.gif" data-src="full/mountain-002.jpg"' in page
    assert '<picture><source type="image/jpeg" srcset="thumb/mountain-003.jpg 1x' in page
    assert '<meta property="og:image" content="full/mountain-000.jpg">' in page
    assert '<link rel="next" href="page-2.html">' in page
    last = get(url + "mountain/page-3.html")[2].decode()
    assert 'rel="next"' not in last and "full/mountain-009.jpg" in last


def test_gallery_serves_full_pictures_thumbnails_and_a_broken_link(gallery):
    _, url = gallery
    status, ctype, body = get(url + "forest/full/forest-004.jpg")
    assert (status, ctype) == (200, "image/jpeg")
    assert Image.open(io.BytesIO(body)).size == FULL_SIZE
    status, _, body = get(url + "forest/thumb/forest-004.jpg")
    assert status == 200 and Image.open(io.BytesIO(body)).size == THUMB_SIZE
    page = get(url + "forest/page-2.html")[2].decode()
    (broken,) = re.findall(r'href="(full/missing-\d+\.jpg)"', page)
    assert get(url + "forest/" + broken)[0] == 404
    assert get(url + "robots.txt")[0] == 200


def test_gallery_server_listens_on_loopback_only_and_stops(tmp_path):
    (tmp_path / "index.html").write_text("hi")
    with GalleryServer(tmp_path) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert get(server.url + "index.html")[2] == b"hi"
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url + "index.html", timeout=2)
