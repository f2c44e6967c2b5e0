"""What pixelpipe reads of protego beyond its public API: the rules of the group a user agent
gets and the URL normalisation rules are compared with. protego exposes only `can_fetch`,
whose cost grows with the number of wildcard rules; robots.py matches these rules itself
under a bound. tests/tasks/scrape/test_robots_match.py fails loudly when these move."""

from __future__ import annotations

from typing import NamedTuple

from protego import Protego
from protego._utils import _quote_path


class Rule(NamedTuple):
    """One Allow/Disallow rule of a group, its pattern normalised as protego compares it."""

    allow: bool
    pattern: str  # percent-encoding normalised; `*` any run; a final `$` anchors the end
    priority: int  # the longest matching rule wins; on a tie, Allow


def group_rules(parser: Protego, user_agent: str) -> list[Rule] | None:
    """The rules of the group that applies to `user_agent` (protego's choice, cached by it),
    highest priority first; None when no group applies (everything is allowed)."""
    rule_set = parser._get_matching_rule_set(user_agent)
    if rule_set is None:
        return None
    return [Rule(r.field == "allow", r.value._pattern, r.value.priority) for r in rule_set._rules]


def normalised_path(url: str) -> str:
    """The path and query of `url`, percent-encoding normalised as the patterns are."""
    return _quote_path(url)
