"""Group-skewed loads: a few expert groups carry most of the tokens, which is what makes the
hierarchical policy (groups whole on nodes) lose against the global one."""

import numpy as np

from eplbench.instances.families import shares_to_counts, standard_normal

DEFAULTS = {"groups": 8, "hot_groups": 2, "skew": 4.0, "sigma": 0.5, "tokens_per_expert": 4096}


def generate(rng, num_layers, num_experts, groups, hot_groups, skew, sigma, tokens_per_expert):
    """[L, E] int64 counts: log-normal experts, `hot_groups` random groups scaled by `skew`."""
    groups = min(groups, num_experts)
    shares = np.exp(sigma * standard_normal(rng, (num_layers, num_experts)))
    hot = np.argsort(rng.random((num_layers, groups)), axis=1) < hot_groups
    factor = np.where(hot, skew, 1.0)
    shares *= np.repeat(factor, -(-num_experts // groups), axis=1)[:, :num_experts]
    return shares_to_counts(shares, tokens_per_expert * num_experts)
