"""Routing simulator: tokens pick top-k experts with group-limited routing, as DeepSeek-V3.

Each layer has per-expert logits (sigma * N(0, 1)); a token scores every expert as
logit + temperature * Gumbel noise, ranks groups by the sum of their two best scores, keeps
the `topk_groups` best groups and routes to its `top_k` best experts inside them. Windows
follow each other with AR(1) drift of the logits: logits' = rho * logits + sqrt(1 - rho^2) *
sigma * N(0, 1), so consecutive windows are correlated but not equal.
"""

import numpy as np

from eplbench.errors import BadInput
from eplbench.instances.families import standard_normal

DEFAULTS = {"tokens": 4096, "top_k": 8, "groups": 8, "topk_groups": 4, "sigma": 1.0,
            "temperature": 1.0, "drift": 0.9, "window": 0}


def generate(rng, num_layers, num_experts, tokens, top_k, groups, topk_groups, sigma,
             temperature, drift, window):
    """[L, E] int64 tokens routed to each expert in window `window` (sum T * k per layer)."""
    return simulate_windows(rng, num_layers, num_experts, window + 1, tokens, top_k, groups,
                            topk_groups, sigma, temperature, drift)[window]


def simulate_windows(rng, num_layers, num_experts, windows, tokens, top_k, groups,
                     topk_groups, sigma, temperature, drift):
    """[W, L, E] int64 loads of `windows` consecutive windows."""
    if num_experts % groups or top_k > topk_groups * (num_experts // groups):
        raise BadInput(f"routing: {num_experts} experts in {groups} groups cannot route "
                       f"top_k={top_k} within topk_groups={topk_groups}")
    logits = sigma * standard_normal(rng, (num_layers, num_experts))
    loads = np.zeros((windows, num_layers, num_experts), dtype=np.int64)
    for w in range(windows):
        if w:
            innovation = sigma * standard_normal(rng, (num_layers, num_experts))
            logits = drift * logits + np.sqrt(1.0 - drift**2) * innovation
        for layer in range(num_layers):
            choices = route(rng, logits[layer], tokens, top_k, groups, topk_groups, temperature)
            loads[w, layer] = np.bincount(choices.ravel(), minlength=num_experts)
    return loads


def route(rng, logits, tokens, top_k, groups, topk_groups, temperature) -> np.ndarray:
    """[T, k] experts chosen by each token (logits: [E])."""
    num_experts = logits.shape[0]
    gumbel = -np.log(-np.log(1.0 - rng.random((tokens, num_experts)) * (1 - 1e-12)))
    scores = logits[None, :] + temperature * gumbel
    by_group = scores.reshape(tokens, groups, num_experts // groups)
    best_two = np.sort(by_group, axis=2)[:, :, -min(2, by_group.shape[2]):].sum(2)
    kept = np.argsort(-best_two, axis=1, kind="stable")[:, :topk_groups]
    allowed = np.zeros((tokens, groups), dtype=bool)
    np.put_along_axis(allowed, kept, True, axis=1)
    masked = np.where(np.repeat(allowed, num_experts // groups, axis=1), scores, -np.inf)
    return np.argsort(-masked, axis=1, kind="stable")[:, :top_k]
