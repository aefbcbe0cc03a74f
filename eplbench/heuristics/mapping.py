"""The engine's three maps, built from one another (spec §4 output contract).

phy2log: [L, P] int64, expert of each slot; rank: [L, P] int64, replica index of each slot
among its expert's slots; logcnt: [L, E] int64; log2phy: [L, E, X] int64 padded with -1.
"""

import torch


def log2phy_from_ranks(phy2log: torch.Tensor, rank: torch.Tensor,
                       logcnt: torch.Tensor) -> torch.Tensor:
    """[L, E, X] slot of replica r of expert e at [l, e, r], X = max count, padded with -1."""
    num_layers, num_slots = phy2log.shape
    width = int(logcnt.max())
    log2phy = torch.full((num_layers, logcnt.shape[1], width), -1, dtype=torch.int64)
    slot_ids = torch.arange(num_slots, dtype=torch.int64).expand(num_layers, -1)
    log2phy.view(num_layers, -1).scatter_(-1, phy2log * width + rank, slot_ids)
    return log2phy


def ranks_in_slot_order(phy2log: torch.Tensor, num_experts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rank [L, P], logcnt [L, E]) numbering each expert's replicas in slot order."""
    one_hot = torch.nn.functional.one_hot(phy2log, num_experts)
    seen = one_hot.cumsum(1)
    rank = seen.gather(2, phy2log.unsqueeze(-1)).squeeze(-1) - 1
    return rank, seen[:, -1, :]


def engine_maps(phy2log: torch.Tensor, num_experts: int):
    """(phy2log, log2phy, logcnt) for a placement given by phy2log alone."""
    rank, logcnt = ranks_in_slot_order(phy2log, num_experts)
    return phy2log, log2phy_from_ranks(phy2log, rank, logcnt), logcnt
