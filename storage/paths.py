"""Parameter types that name a file or folder on this host. A served run's policy
(flows/gate/policy.py) finds every such value by its type, in any parameter model and at any
depth, so a new path field is covered by its annotation alone. Declared here, below flows/
and tasks/, so a stage's own settings model (tasks/<stage>/settings.py) can use them too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal


@dataclass(frozen=True)
class PathParam:
    """Marks a parameter whose value names a file or folder on this host.

    kind "path": always a path. "weights": a path unless it names the Keras cache
    ('imagenet') or random weights. "model": what a model reference opens (a
    file, a train run's folder, a champion's model; a backbone name opens no path).
    """

    kind: Literal["path", "weights", "model"] = "path"


LocalPath = Annotated[str, PathParam()]
WeightsPath = Annotated[str, PathParam("weights")]
ModelRef = Annotated[str, PathParam("model")]
