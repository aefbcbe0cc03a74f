"""Instance families: each module defines `DEFAULTS` and
`generate(rng, num_layers, num_experts, **params) -> [L, E] int64`.

Adding a family is one file here plus one line in `FAMILIES`.
"""

from __future__ import annotations

import hashlib
import importlib

import numpy as np

from eplbench.errors import BadInput

FAMILIES = {
    "uniform": "eplbench.instances.families.uniform",
    "lognormal": "eplbench.instances.families.lognormal",
    "zipf": "eplbench.instances.families.zipf",
    "hotspot": "eplbench.instances.families.hotspot",
    "group_skewed": "eplbench.instances.families.group_skewed",
    "routing": "eplbench.instances.families.routing",
}


def seed_for(*names) -> int:
    """A seed derived from names (set, family, index), never from run order."""
    return int.from_bytes(hashlib.sha256("/".join(map(str, names)).encode()).digest()[:8], "little")


def generate(family: str, seed: int, num_layers: int, num_experts: int, **params) -> np.ndarray:
    """[L, E] int64 loads of `family` with `params` over its defaults; same seed, same integers."""
    if family not in FAMILIES:
        raise BadInput(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    module = importlib.import_module(FAMILIES[family])
    unknown = set(params) - set(module.DEFAULTS)
    if unknown:
        raise BadInput(f"family {family}: unknown parameters {sorted(unknown)}; "
                       f"known: {sorted(module.DEFAULTS)}")
    rng = np.random.Generator(np.random.PCG64(seed))
    weight = module.generate(rng, num_layers, num_experts, **{**module.DEFAULTS, **params})
    return np.asarray(weight, dtype=np.int64)


def shares_to_counts(shares: np.ndarray, tokens: int) -> np.ndarray:
    """Round non-negative [L, E] shares to int64 token counts summing to about `tokens` per row."""
    shares = shares / shares.sum(axis=1, keepdims=True)
    return np.floor(shares * tokens).astype(np.int64)


def standard_normal(rng: np.random.Generator, shape) -> np.ndarray:
    """N(0, 1) by Box-Muller from `rng.random` doubles (no version-dependent sampler)."""
    u1 = 1.0 - rng.random(shape)
    u2 = rng.random(shape)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
