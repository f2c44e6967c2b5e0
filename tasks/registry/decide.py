"""The promotion rule, pure: which model serves a dataset after tonight, and why in words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # evaluate loads TensorFlow; the rule itself (and the report) need not
    from tasks.registry.evaluate import Scores

TOLERANCE = 1e-9  # an improvement of exactly min_improvement counts despite float rounding
CHAMPION_MAKING = ("first", "promoted", "forced", "rolled_back")  # decisions that move the pointer


@dataclass(frozen=True)
class Rule:
    min_improvement: float = 0.005  # accuracy, as a fraction
    max_class_drop: float = 5.0  # points (percent) any one class may lose


@dataclass(frozen=True)
class Verdict:
    decision: str  # one of storage.schemas.MODEL_DECISIONS
    reason: str

    @property
    def changes_champion(self) -> bool:
        return self.decision in CHAMPION_MAKING


def class_drops(challenger: Scores, champion: Scores) -> dict[str, float]:
    """Points each class loses going from champion to challenger (negative: it gains)."""
    return {
        name: 100.0 * (before - challenger.class_accuracy.get(name, 0.0))
        for name, before in champion.class_accuracy.items()
    }


def decide(
    challenger: Scores,
    champion: Scores | None,
    rule: Rule,
    *,
    has_champion: bool,
    compatible: bool = True,
    same_model: bool = False,
    force_reason: str | None = None,
    champion_error: str | None = None,
) -> Verdict:
    """first / forced / incompatible / kept / promoted, with the numbers that decided it."""
    if not has_champion:
        return Verdict("first", "the dataset's first model becomes its champion")
    if force_reason is not None:
        return Verdict("forced", f"promoted by hand: {force_reason}")
    if not compatible:
        return Verdict(
            "incompatible", "its class names differ from the champion's: never promoted"
            " automatically (promote with --force to replace the champion anyway)"
        )  # fmt: skip
    if same_model:
        return Verdict("kept", "it is already the champion")
    if challenger.images == 0:
        return Verdict("kept", "no readable evaluation image: nothing shows it is better")
    if champion is None:
        return Verdict("promoted", f"the champion could not be evaluated: {champion_error}")
    return _compare(challenger, champion, rule)


def _compare(challenger: Scores, champion: Scores, rule: Rule) -> Verdict:
    gain = challenger.accuracy - champion.accuracy
    numbers = f"accuracy {challenger.accuracy:.4f} vs champion {champion.accuracy:.4f}"
    if gain < rule.min_improvement - TOLERANCE:
        return Verdict(
            "kept",
            f"{numbers}: gain {gain:+.4f} is below min_improvement {rule.min_improvement:.4f}",
        )
    drops = class_drops(challenger, champion)
    worst = max(drops, key=drops.get) if drops else None
    if worst is not None and drops[worst] > rule.max_class_drop + TOLERANCE:
        return Verdict(
            "kept",
            f"{numbers} (gain {gain:+.4f}), but class {worst!r} drops {drops[worst]:.1f}"
            f" points (max_class_drop {rule.max_class_drop:g})",
        )
    worst_text = f"; worst class {worst!r} {0.0 - drops[worst]:+.1f} points" if worst else ""
    return Verdict(
        "promoted",
        f"{numbers}: gain {gain:+.4f} >= min_improvement {rule.min_improvement:.4f}"
        f"{worst_text} (max_class_drop {rule.max_class_drop:g})",
    )


def percent(value: Any) -> str:
    """0.9305 -> "93.1%"; None or NaN (a null float column) -> "–"."""
    missing = value is None or value != value
    return "–" if missing else f"{100 * float(value):.1f}%"
