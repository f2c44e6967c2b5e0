"""robots.txt matching under a bound (Hypothesis): below the cap it decides as protego does;
above it, it is never laxer than protego and its work per URL stays flat however many rules
the file holds. Also the protego internals it reads (protego_compat), which fail loudly here."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from protego import Protego

from tasks.scrape.budget import Meter
from tasks.scrape.protego_compat import Rule, group_rules, normalised_path
from tasks.scrape.robots import MAX_WILDCARD_RULES, RobotsRules, rules_from

UA = "pixelpipe-tests/1.0"
PATH_CHARS = "/ab.*$%2F?=é"
patterns = st.text(PATH_CHARS, max_size=8).map(lambda p: "/" + p)
rules = st.lists(st.tuples(st.sampled_from(["Allow", "Disallow"]), patterns), max_size=12)
paths = st.text("/ab.$%2F?=é", max_size=10).map(lambda p: "/" + p)


def robots(groups: list[tuple[str, list[tuple[str, str]]]]) -> str:
    return "\n\n".join(
        f"User-agent: {agent}\n" + "".join(f"{field}: {value}\n" for field, value in lines)
        for agent, lines in groups
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["*", "pixelpipe-tests", "otherbot"]), rules), max_size=3),
    st.lists(paths, min_size=1, max_size=8),
)
def test_below_the_cap_it_decides_as_protego_does(groups, urls):
    text = robots(groups)
    ours, theirs = rules_from(text.encode(), 200, None), Protego.parse(text)
    for path in urls:
        url = "http://h.example" + path
        assert ours.allows(url, UA) == theirs.can_fetch(url, UA), (text, url)


def hostile(n: int, seed: int = 0, allow_share: float = 0.0) -> str:
    rng = random.Random(seed)
    lines = ["User-agent: *"]
    for _ in range(n):
        field = "Allow" if rng.random() < allow_share else "Disallow"
        lines.append(f"{field}: /{rng.choice('ab')}*{rng.randrange(10**6)}*x{rng.randrange(99)}$")
    return "\n".join(lines) + "\nAllow: /a/\nDisallow: /b/c\n"


FILLER = "".join(f"Disallow: /zz*{i:06d}*never\n" for i in range(MAX_WILDCARD_RULES))


@settings(max_examples=150, deadline=None)
@given(rules, st.lists(paths, min_size=1, max_size=8))
def test_above_the_cap_it_is_never_laxer_than_protego(group, urls):
    # The filler rules are longer, so they take the kept places and `group` is past the cap.
    text = "User-agent: *\n" + FILLER + "".join(f"{f}: {v}*{v[1:]}\n" for f, v in group)
    ours, theirs = rules_from(text.encode(), 200, None), Protego.parse(text)
    for path in urls:
        url = "http://h.example" + path
        if not theirs.can_fetch(url, UA):
            assert not ours.allows(url, UA), (group, url)


def work_per_check(text: str, checks: int = 50) -> float:
    rules, meter = rules_from(text.encode(), 200, None), Meter()
    for i in range(checks):
        rules.allows(f"http://h.example/img/{i}/{i * 7919}.jpg", UA, meter)
    return meter.spent / checks


def test_work_per_url_stays_flat_however_many_rules_the_file_holds():
    for share in (0.0, 1.0):  # disallows are widened past the cap, allows dropped
        small, large = (work_per_check(hostile(n, allow_share=share)) for n in (2_000, 8_000))
        assert large <= small <= MAX_WILDCARD_RULES + 64, share


def test_the_product_token_group_is_the_one_matched():
    text = "User-agent: *\nDisallow: /\n\nUser-agent: pixelpipe-tests\nDisallow: /no/\n"
    rules = rules_from(text.encode(), 200, None)
    assert rules.allows("http://h/yes.jpg", UA) and not rules.allows("http://h/no/x.jpg", UA)
    assert not rules.allows("http://h/yes.jpg", "someone-else")
    assert rules.allows("http://h/robots.txt", "someone-else")  # robots.txt is always allowed


def test_robots_rules_without_a_body_allow_or_refuse_all():
    assert RobotsRules(None, True, "").allows("http://h/x", UA)
    assert not RobotsRules(None, False, "why").allows("http://h/x", UA)


# --- protego internals (protego_compat): a protego release that moves them fails here ----------


def test_protego_compat_reads_the_group_rules_in_protegos_order():
    parser = Protego.parse("User-agent: *\nDisallow: /a\nAllow: /a/b*c$\nDisallow: /%7Ex\n")
    assert group_rules(parser, UA) == [
        Rule(allow=True, pattern="/a/b*c%24", priority=9),  # a "$" may also be a literal one
        Rule(allow=True, pattern="/a/b*c$", priority=7),
        Rule(allow=False, pattern="/~x", priority=3),
        Rule(allow=False, pattern="/a", priority=2),
    ]
    assert group_rules(Protego.parse("User-agent: otherbot\nDisallow: /\n"), UA) is None


def test_protego_compat_normalises_paths_as_the_patterns():
    assert normalised_path("http://h/%7Ex/a%3Db?q=1#frag") == "/~x/a=b%3Fq=1"
    assert normalised_path("http://h") == "/"
