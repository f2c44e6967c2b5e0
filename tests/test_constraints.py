"""constraints.txt pins, exactly, a version of every package pyproject.toml asks for, inside its
range: README's install then gives what CI tested, and a dependency added to pyproject without
refreshing the pins (.ci/refresh-constraints) fails here instead of installing unpinned."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def pins(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            found[canonicalize_name(name.split("[")[0])] = version.strip()
    return found


def declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = project["dependencies"] + [r for name in ("test", "dask", "openvino", "bench")
                                        for r in extras[name]]  # fmt: skip
    return [Requirement(r) for r in wanted]


def test_every_declared_dependency_is_pinned_inside_its_range():
    pinned = pins((REPO / "constraints.txt").read_text())
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pinned, (
            f"{name} is in pyproject.toml but not pinned: .ci/refresh-constraints"
        )
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{name}=={pinned[name]} is outside pyproject's {requirement.specifier}"
        )


def test_the_pin_reader_refuses_ranges():
    assert pins("# c\nrequests==2.32.0\nKeras==3.1\n") == {"requests": "2.32.0", "keras": "3.1"}
    with pytest.raises(AssertionError, match="not an exact pin"):
        pins("numpy>=1.26\n")
