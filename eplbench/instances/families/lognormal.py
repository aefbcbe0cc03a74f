"""Log-normal loads: shares exp(sigma * N(0, 1)), the usual shape of measured expert loads."""

import numpy as np

from eplbench.instances.families import shares_to_counts, standard_normal

DEFAULTS = {"sigma": 1.0, "tokens_per_expert": 4096}


def generate(rng, num_layers, num_experts, sigma, tokens_per_expert):
    """[L, E] int64 counts, about tokens_per_expert * E per layer."""
    shares = np.exp(sigma * standard_normal(rng, (num_layers, num_experts)))
    return shares_to_counts(shares, tokens_per_expert * num_experts)
