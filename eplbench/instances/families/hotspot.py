"""Hot-spot loads: `hot` random experts carry `share` of the tokens, the rest split the remainder."""

import numpy as np

from eplbench.instances.families import shares_to_counts

DEFAULTS = {"hot": 2, "share": 0.5, "tokens_per_expert": 4096}


def generate(rng, num_layers, num_experts, hot, share, tokens_per_expert):
    """[L, E] int64 counts; hot and cold shares jittered by +-20%."""
    jitter = 0.8 + 0.4 * rng.random((num_layers, num_experts))
    is_hot = np.argsort(rng.random((num_layers, num_experts)), axis=1) < hot
    cold = max(num_experts - hot, 1)
    shares = np.where(is_hot, share / max(hot, 1), (1.0 - share) / cold) * jitter
    return shares_to_counts(shares, tokens_per_expert * num_experts)
