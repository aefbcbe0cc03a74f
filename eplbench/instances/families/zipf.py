"""Zipf loads: the expert of popularity rank r gets a share proportional to r^-s."""

import numpy as np

from eplbench.instances.families import shares_to_counts

DEFAULTS = {"s": 1.0, "tokens_per_expert": 4096}


def generate(rng, num_layers, num_experts, s, tokens_per_expert):
    """[L, E] int64 counts; each layer ranks its experts in a random order."""
    by_rank = np.arange(1, num_experts + 1, dtype=np.float64) ** -float(s)
    ranks = np.argsort(rng.random((num_layers, num_experts)), axis=1)
    return shares_to_counts(by_rank[ranks], tokens_per_expert * num_experts)
