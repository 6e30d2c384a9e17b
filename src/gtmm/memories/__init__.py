"""Memory registry: one file per memory, all behind `AbstractMemory` (SPEC section 1)."""

from __future__ import annotations

from gtmm.errors import GtmmError
from gtmm.memories.associative import AssociativeMemory
from gtmm.memories.base import AbstractMemory, ControllerInput
from gtmm.memories.dnc import DNCMemory
from gtmm.memories.introspective import IntrospectiveMemory
from gtmm.memories.lru import LRUMemory
from gtmm.memories.ntm import NTMMemory
from gtmm.memories.vrnn import VRNNMemory

MEMORIES: dict[str, type[AbstractMemory]] = {
    "vrnn": VRNNMemory,
    "introspective": IntrospectiveMemory,
    "ntm": NTMMemory,
    "lru": LRUMemory,
    "dnc": DNCMemory,
    # Beyond the paper: the combined memory its conclusion proposes (latents read by position,
    # content and succession).
    "associative": AssociativeMemory,
}

# LSTM widths chosen so every model has about the paper's Table 1 parameter count
# (1.86-1.88 M) on the digits tasks at T = 20; `gtmm info` prints the counts. The NTM, LRU and
# DNC controllers are narrow because their Psi = [5 reads of 32, h_t] feeds the prior,
# posterior and observation maps, whose input layers grow with |Psi|; their memory
# parameters do not depend on the number of slots.
DEFAULT_HIDDEN = {"vrnn": 222, "introspective": 316, "ntm": 93, "lru": 92, "dnc": 93, "associative": 300}
# The same for the 3D networks of appendix B.2 (latent 256, 768 image features, T = 30), near
# Table 1's 5.91-5.99 M; `gtmm info --task rotation-3d` prints the counts.
DEFAULT_HIDDEN_3D = {"vrnn": 320, "introspective": 150, "ntm": 51, "lru": 49, "dnc": 51, "associative": 95}
DEFAULT_HIDDEN_BY_NETWORK = {"inception": DEFAULT_HIDDEN, "two-pathway": DEFAULT_HIDDEN_3D}
# The introspective memory with `context_with_controller`: h_t joins Psi, so the maps' input
# layers grow with the controller's width, as for the NTM, LRU and DNC; these widths give the
# paper-faithful introspective model's count within 0.1% (1,868,189 against 1,869,173 on the
# digits, 5,962,124 against 5,960,364 in 3D) instead of 3.33 M at width 316.
DEFAULT_HIDDEN_WITH_CONTROLLER = {"inception": 98, "two-pathway": 110}


def check_model(name: str) -> None:
    if name not in MEMORIES:
        raise GtmmError(f"unknown model {name!r}; choose one of: {', '.join(MEMORIES)}")


__all__ = ["AbstractMemory", "ControllerInput", "MEMORIES", "DEFAULT_HIDDEN", "DEFAULT_HIDDEN_3D", "DEFAULT_HIDDEN_BY_NETWORK",
           "DEFAULT_HIDDEN_WITH_CONTROLLER", "check_model"]
