"""Uniform loads: every expert draws its token count uniformly from [low, high]."""

DEFAULTS = {"low": 0, "high": 10_000}


def generate(rng, num_layers, num_experts, low, high):
    """[L, E] int64 counts uniform on [low, high]."""
    return rng.integers(low, high, size=(num_layers, num_experts), endpoint=True)
