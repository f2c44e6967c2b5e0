"""The canonical host key (property-based): every spelling of one host is one key, different
hosts or ports never share one, and user info never survives into what is stored."""

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.scrape.hosts import HostKey, has_user_info, host_key, without_user_info
from tasks.scrape.politeness import limit_name, limit_names

ASCII_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True).filter(
    lambda s: "--" not in s  # "xn--..." would be an IDNA A-label, checked on its own below
)
UNICODE_LABEL = st.text(st.sampled_from("abcdeéüßçøñ"), min_size=1, max_size=8)
NAME = st.lists(ASCII_LABEL, min_size=1, max_size=3).map(".".join).map(lambda n: n + ".example")
PORT = st.integers(1, 65535)
USER = st.from_regex(r"[A-Za-z0-9._~-]{1,8}", fullmatch=True)


def random_case(rng, text: str) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in text)


@st.composite
def spellings(draw, host):
    """Another way to write http(s)://<host>:<port>/: case, user info, the default port
    written out or left out, a trailing dot."""
    scheme = draw(st.sampled_from(["http", "https"]))
    default = {"http": 80, "https": 443}[scheme]
    port = draw(st.one_of(st.just(default), PORT))
    rng = draw(st.randoms(use_true_random=False))

    def one() -> str:
        name = random_case(rng, host) + ("." if rng.random() < 0.3 else "")
        user = draw(st.one_of(st.just(""), USER.map(lambda u: u + "@")))
        user = draw(st.sampled_from([user, user.replace("@", ":pw@") if user else ""]))
        shown = f":{port}" if port != default or rng.random() < 0.5 else ""
        return f"{random_case(rng, scheme)}://{user}{name}{shown}/{draw(ASCII_LABEL)}"

    return HostKey(scheme, host, port), [one() for _ in range(4)]


@given(NAME.flatmap(spellings))
def test_every_spelling_of_one_host_is_one_key(drawn):
    key, urls = drawn
    assert {host_key(u) for u in urls} == {key}
    assert len(limit_names(urls)) == 1


@given(st.lists(UNICODE_LABEL, min_size=1, max_size=2).map(".".join), st.booleans())
def test_a_unicode_name_and_its_punycode_are_one_key(name, upper):
    import idna

    ascii_name = idna.encode(name, uts46=True).decode()
    # Upper case where it maps back (not "ß", whose upper case "SS" is another name).
    spelled = name.upper() if upper and name.upper().lower() == name else name
    assert host_key(f"http://{spelled}.example/") == host_key(f"HTTP://{ascii_name}.EXAMPLE:80/")
    assert host_key(f"http://{name}.example/").host == f"{ascii_name}.example"


@given(st.integers(0, 2**32 - 1))
def test_every_numeric_form_of_an_ipv4_address_is_one_key(number):
    dotted = socket.inet_ntoa(number.to_bytes(4, "big"))
    a, b, c, d = number.to_bytes(4, "big")
    forms = [
        dotted,
        str(number),  # 2130706433
        hex(number),  # 0x7f000001
        f"{a}.{(b << 16) | (c << 8) | d}",  # 127.1
        f"{a}.{b}.{(c << 8) | d}",  # 127.0.1
        ".".join(f"0{o:o}" for o in (a, b, c, d)),  # 0177.0.0.01
    ]
    assert {host_key(f"http://{f}:8080/x") for f in forms} == {HostKey("http", dotted, 8080)}


@given(st.ip_addresses(v=6))
def test_ipv6_literals_are_one_key_however_written(ip):
    long_form = ":".join(f"{int(ip) >> (112 - 16 * i) & 0xFFFF:04X}" for i in range(8))
    assert host_key(f"http://[{long_form}]/") == host_key(f"http://[{ip.compressed}]:80/")


@given(st.tuples(NAME, PORT), st.tuples(NAME, PORT), st.sampled_from(["http", "https"]))
def test_different_hosts_or_ports_never_share_a_key_or_a_limit(a, b, scheme):
    (host_a, port_a), (host_b, port_b) = a, b
    key_a = host_key(f"{scheme}://{host_a}:{port_a}/")
    key_b = host_key(f"{scheme}://{host_b}:{port_b}/")
    assert (key_a == key_b) == ((host_a, port_a) == (host_b, port_b))
    assert (limit_name(key_a) == limit_name(key_b)) == (key_a == key_b)


def test_schemes_and_lookalike_names_are_kept_apart():
    keys = [
        host_key("http://example.com/"),
        host_key("https://example.com/"),  # another origin (RFC 9309: its own robots.txt)
        host_key("http://example.com:8080/"),
        host_key("http://example.com-80/"),
        host_key("http://[::1]/"),
        host_key("http://--1/"),
    ]
    assert len(set(keys)) == len({limit_name(k) for k in keys}) == len(keys)


def test_the_key_names_the_host_the_request_goes_to():
    # urllib3 (what requests sends with) ends the authority at the backslash; urlsplit does not.
    assert host_key("http://a.example\\@b.example/").host == "a.example"
    assert host_key("http://x@y@c.example/").host == "c.example"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/", "not an http"),
        ("http:///path", "no host"),
        ("http://example.com:99999/", "Failed to parse"),
        ("http://exa mple.com/", "Failed to parse"),
    ],
)
def test_urls_without_a_key_are_a_one_line_value_error(url, why):
    with pytest.raises(ValueError, match=why):
        host_key(url)


@given(USER, USER, NAME, st.from_regex(r"(/[a-z0-9]{1,6}){0,3}", fullmatch=True))
def test_user_info_never_survives_into_what_is_stored(user, password, host, path):
    user, password = f"U{user}Z", f"P{password}Q"  # tokens no host or path contains
    for userinfo in (f"{user}@", f"{user}:{password}@", f"{user}@{password}@"):
        url = f"https://{userinfo}{host}{path}"
        assert has_user_info(url)
        kept = without_user_info(url)
        assert user not in kept and password not in kept and "@" not in kept
        assert host_key(kept) == host_key(url)
    plain = f"https://{host}{path}"
    assert not has_user_info(plain) and without_user_info(plain) == plain
