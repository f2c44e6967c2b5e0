"""robots.txt per RFC 9309 and X-Robots-Tag opt-outs, against the real loopback server."""

import itertools
import logging

import pytest

import tasks.scrape.fetch as fetch_module
from tasks.scrape.fetch import Fetcher, ScrapeSettings
from tasks.scrape.robots import product_token, rules_from, x_robots_refusal
from tasks.scrape.tasks import download_images
from tests.http_server import SiteServer, picture

UA = "pixelpipe-tests/1.0 (+https://example.invalid/bot)"


def config(**overrides) -> ScrapeSettings:
    base = dict(user_agent=UA, timeout=2.0, backoff=0.01, retries=0, allow_private_networks=True)
    return ScrapeSettings(**{**base, **overrides})


def fetch_all(robots: bytes | None, paths: list[str], **server) -> dict[str, str | None]:
    """Status of each path (None: fetched) on a site whose robots.txt is `robots`."""
    files = {p: picture(i) for i, p in enumerate(paths)}
    if robots is not None:
        files["robots.txt"] = robots
    with SiteServer(root=None, files=files, **server) as site, Fetcher(config()) as fetcher:
        return {p: fetcher.get(site.url(p)).status for p in paths}


# --- RFC 9309 rules (protego) ------------------------------------------------------------------


def test_wildcards_and_end_anchors_match():
    robots = b"User-agent: *\nDisallow: /*.jpg$\nDisallow: /tmp*/draft\n"
    got = fetch_all(robots, ["a/b.jpg", "a/b.jpg.png", "a/b.png", "tmp1/x/draft.png"])
    assert got == {
        "a/b.jpg": "robots_disallowed",  # the stdlib parser let this through
        "a/b.jpg.png": None,  # `$`: only a path that ends in .jpg
        "a/b.png": None,
        "tmp1/x/draft.png": "robots_disallowed",
    }


def test_the_longest_match_wins_so_a_specific_allow_beats_a_shorter_disallow():
    robots = b"User-agent: *\nDisallow: /private/\nAllow: /private/ok.jpg\n"
    got = fetch_all(robots, ["private/ok.jpg", "private/secret.jpg"])
    assert got == {"private/ok.jpg": None, "private/secret.jpg": "robots_disallowed"}


def test_the_group_for_our_product_token_wins_over_the_star_group():
    robots = b"User-agent: *\nDisallow: /\n\nUser-agent: pixelpipe-tests\nDisallow: /no/\n"
    assert fetch_all(robots, ["yes.jpg", "no/x.jpg"]) == {
        "yes.jpg": None,
        "no/x.jpg": "robots_disallowed",
    }


def test_only_the_first_500_kib_are_parsed_and_a_longer_file_is_not_a_refusal():
    head = b"User-agent: *\nDisallow: /private/\n"
    padding = b"# " + b"x" * 1000 + b"\n"
    robots = head + padding * 600 + b"Disallow: /img/\n"  # about 600 KiB; the last rule is cut
    assert len(robots) > 512 * 1024
    got = fetch_all(robots, ["img/a.jpg", "private/b.jpg"])
    assert got == {"img/a.jpg": None, "private/b.jpg": "robots_disallowed"}


@pytest.mark.parametrize(("code", "allowed"), [(401, True), (404, True), (410, True), (500, False)])
def test_a_4xx_allows_all_and_a_5xx_disallows_all(code, allowed):
    got = fetch_all(None, ["a.jpg"], statuses={"robots.txt": code})
    assert got == {"a.jpg": None if allowed else "robots_disallowed"}


def test_redirects_to_robots_txt_are_followed():
    files = {"rules/robots.txt": b"User-agent: *\nDisallow: /private/\n"}
    files |= {"private/a.jpg": picture(1), "b.jpg": picture(2)}
    hops = {"robots.txt": "/moved/robots.txt", "moved/robots.txt": "/rules/robots.txt"}
    with (
        SiteServer(root=None, files=files, redirects=hops) as site,
        Fetcher(config()) as fetcher,
    ):
        assert fetcher.get(site.url("private/a.jpg")).status == "robots_disallowed"
        assert fetcher.get(site.url("b.jpg")).ok
    assert len(site.hits("rules/robots.txt")) == 1
    assert site.hits("private/a.jpg") == []


def test_rules_from_a_response_follow_rfc_9309_without_a_server():
    assert rules_from(None, 404, "HTTP 404").allows("http://h/x", UA)
    assert not rules_from(None, 503, "HTTP 503").allows("http://h/x", UA)
    assert not rules_from(None, None, "connection refused").allows("http://h/x", UA)
    assert rules_from(b"User-agent: *\nCrawl-delay: 2.5\n", 200, None).crawl_delay(UA) == 2.5


# --- Crawl-delay ----------------------------------------------------------------------------


def test_crawl_delay_spaces_requests_to_a_host():
    files = {f"{i}.jpg": picture(i) for i in range(3)}
    files["robots.txt"] = b"User-agent: *\nCrawl-delay: 0.3\n"
    with SiteServer(root=None, files=files) as site, Fetcher(config(per_host=4)) as fetcher:
        for name in ("0.jpg", "1.jpg", "2.jpg"):
            assert fetcher.get(site.url(name)).ok
        starts = [site.hits(name)[0].at for name in ("0.jpg", "1.jpg", "2.jpg")]
    # Lower bounds only: each request started at least the delay after the one before.
    assert all(b - a >= 0.28 for a, b in itertools.pairwise(starts)), starts


def test_a_long_crawl_delay_is_capped_and_the_cap_is_logged(monkeypatch, caplog):
    monkeypatch.setattr(fetch_module, "MAX_CRAWL_DELAY_S", 0.2)
    files = {"a.jpg": picture(1), "b.jpg": picture(2)}
    files["robots.txt"] = b"User-agent: *\nCrawl-delay: 3600\n"
    with (
        caplog.at_level(logging.WARNING, logger="pixelpipe"),
        SiteServer(root=None, files=files) as site,
        Fetcher(config()) as fetcher,
    ):
        assert fetcher.get(site.url("a.jpg")).ok and fetcher.get(site.url("b.jpg")).ok
        (a,), (b,) = site.hits("a.jpg"), site.hits("b.jpg")
    assert 0.18 <= b.at - a.at < 3600
    assert "Crawl-delay 3600" in caplog.text and "(the cap)" in caplog.text


# --- X-Robots-Tag ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "refused"),
    [
        (["noai"], True),
        (["noimageai"], True),
        (["noindex, nofollow"], True),
        (["NoImageIndex"], True),
        (["none"], True),
        (["all"], False),
        (["otherbot: noai"], False),  # addressed to someone else
        (["pixelpipe-tests: noimageai"], True),  # to us, by product token
        (["otherbot: noindex", "nofollow"], False),  # separate header lines stay apart
        (["unavailable_after: 25 Jun 2010 15:00:00 PST"], False),
        (["nosnippet, unavailable_after: 25 Jun 2010"], False),
    ],
)
def test_x_robots_tag_values(values, refused):
    assert (x_robots_refusal(values, UA) is not None) is refused


def test_the_product_token_is_the_name_before_the_version():
    assert product_token(UA) == "pixelpipe-tests"
    assert product_token("pixelpipe/0.1 (+image dataset builder)") == "pixelpipe"


def test_opted_out_images_are_robots_disallowed_rows_and_nothing_is_stored(tmp_path):
    headers = {
        "noai.jpg": [("X-Robots-Tag", "noai")],
        "ours.jpg": [
            ("X-Robots-Tag", "otherbot: noindex"),
            ("X-Robots-Tag", "pixelpipe-tests: noimageindex"),
        ],
        "theirs.jpg": [("X-Robots-Tag", "otherbot: noai")],
        "plain.jpg": [],
    }  # fmt: skip
    files = {name: picture(i) for i, name in enumerate(headers)}
    with SiteServer(root=None, files=files, headers=headers) as site:
        candidates = [{"url": site.url(n), "page_url": "p", "found_in": "img[src]"} for n in files]
        on = download_images.fn(candidates, "r", "t", str(tmp_path / "on"), config())
        off_cfg = config(respect_x_robots_tag=False)
        off = download_images.fn(candidates, "r", "t", str(tmp_path / "off"), off_cfg)
    assert [r["status"] for r in on] == ["robots_disallowed", "robots_disallowed", "ok", "ok"]
    assert "noai" in on[0]["error"] and "noimageindex" in on[1]["error"]
    assert all(r["path"] is None and r["sha256"] is None for r in on[:2])
    assert len(list((tmp_path / "on").iterdir())) == 2  # only theirs.jpg and plain.jpg
    assert [r["status"] for r in off] == ["ok"] * 4
