"""Memory registry: one file per memory, all behind `AbstractMemory` (SPEC section 1)."""

from __future__ import annotations

from gtmm.errors import GtmmError
from gtmm.memories.base import AbstractMemory, ControllerInput
from gtmm.memories.introspective import IntrospectiveMemory
from gtmm.memories.vrnn import VRNNMemory

MEMORIES: dict[str, type[AbstractMemory]] = {
    "vrnn": VRNNMemory,
    "introspective": IntrospectiveMemory,
}

# LSTM widths chosen so every model has about the paper's Table 1 parameter count
# (1.86-1.88 M) on the digits tasks at T = 20; `gtmm info` prints the counts.
DEFAULT_HIDDEN = {"vrnn": 222, "introspective": 316}


def check_model(name: str) -> None:
    if name not in MEMORIES:
        raise GtmmError(f"unknown model {name!r}; choose one of: {', '.join(MEMORIES)}")


__all__ = ["AbstractMemory", "ControllerInput", "MEMORIES", "DEFAULT_HIDDEN", "check_model"]
