"""Why `pixelpipe demo`'s optional ResNet50 ImageNet stage is skipped, and how to run it."""

from __future__ import annotations

from tasks.weights import weights_hint

OPTION = "--weights"  # `pixelpipe demo --weights PATH`


def skipped_line(file: str) -> str:
    """The line the demo prints (and its report shows) when `file`, the ResNet50 ImageNet
    weights, is not in the weights folder: the demo never downloads."""
    return (
        "ResNet50 ImageNet stage skipped: its weights are not in the weights folder and the"
        f" demo never downloads. To run it, {weights_hint(OPTION, file, random=False)}."
    )
