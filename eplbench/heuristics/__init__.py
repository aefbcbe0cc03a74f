"""Heuristics: built-ins by name, user files and `pkg.module:function` specs.

Every heuristic is called with the engines' signature (spec §4):
`rebalance_experts(weight [L, E], num_replicas, num_groups, num_nodes, num_gpus)
-> (phy2log [L, P], log2phy [L, E, X], logcnt [L, E])`, any integer dtype, or `phy2log`
alone (vLLM's policy, whose last argument is named `num_ranks`). SGLang's form
`(tokens_per_expert [steps, L, E], num_physical_experts, num_local_physical_experts,
num_groups, num_nodes[, enable_hierarchical])` is recognised by its parameter names and
called with one step of loads, P / num_gpus local slots and, where it asks, the hierarchy
DeepSeek's rule would choose (num_groups % num_nodes == 0). `NAME@K` gives a built-in
that takes a budget (`budgeted`) the budget K.

A heuristic may also take the plan in place ([L, P] phy2log of the previous rebalance) by a
keyword of OLD_PLAN_KEYWORDS (vLLM's `old_global_expert_indices`, or `old_phy2log`), found
from its signature; it is given when there is one (replay), and never otherwise.

Adding a built-in is one file in this package plus one line in `BUILTINS`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

from eplbench.errors import BadInput

# name -> ("module:function", one-line description)
BUILTINS: dict[str, tuple[str, str]] = {
    "deepseek": ("eplbench.heuristics.deepseek:rebalance_experts",
                 "DeepSeek EPLB, faithful port (reference speed)"),
    "deepseek_fast": ("eplbench.heuristics.deepseek_fast:rebalance_experts",
                      "DeepSeek EPLB, packing vectorised across layers (same output)"),
    "deepseek_distinct": ("eplbench.heuristics.deepseek_distinct:rebalance_experts",
                          "DeepSeek EPLB keeping experts unique per GPU: D'Hondt capped at one "
                          "replica per GPU, LPT skipping a GPU that holds the expert"),
    "vllm": ("eplbench.heuristics.vllm:rebalance_experts", "vLLM default policy (DefaultEplbPolicy), faithful port"),
    "swap_search": ("eplbench.heuristics.swap_search:rebalance_experts",
                    "ours: D'Hondt + greedy packing + best-improvement swaps, heaviest pack vs all"),
    "swap_search_distinct": ("eplbench.heuristics.swap_search:rebalance_experts_distinct",
                             "ours: swap_search keeping experts unique per GPU (counts at most "
                             "G, copies separated, swaps that keep GPUs distinct)"),
    "zigzag": ("eplbench.heuristics.peers:zigzag",
               "SGLang deepseek_vec: D'Hondt, replicas dealt to GPUs in a serpentine"),
    "budgeted": ("eplbench.heuristics.budgeted:rebalance_experts",
                 "ours: from the plan in place, the moves that lower the max load most per "
                 "weight received, up to K per layer (budgeted@K; K = 16)"),
    "swift_swaps": ("eplbench.heuristics.peers:swift",
                    "vllm-ascend SwiftBalancer's bounded swaps after DeepSeek's packing"),
    "swift_balancer": ("eplbench.heuristics.swift_balancer:rebalance_experts",
                       "vllm-ascend SwiftBalancer, incremental from the plan in place, with the "
                       "engine worker's check; faithful port (DeepSeek's plan without one)"),
    "seed000": ("eplbench.heuristics.seeds:seed000",
                "seed 000 whole: peak-aware tail + 2x2 move (exact rule); swaps, nearest target"),
    "seed001": ("eplbench.heuristics.seeds:seed001",
                "seed 001 whole: D'Hondt + one-step donor->receiver replica move"),
    "seed002": ("eplbench.heuristics.seeds:seed002",
                "seed 002 whole: fixed 10% Sainte-Lague tail + 2x2 move; swaps, top-2 x bottom-2"),
    "seed003": ("eplbench.heuristics.seeds:seed003",
                "seed 003 whole: simulated tail length + 2x2 move; swaps, two lightest packs"),
    "seed004": ("eplbench.heuristics.seeds:seed004",
                "seed 004 whole: CV-scaled tail + 2x2 move; swaps, nearest target"),
    "swap_nearest": ("eplbench.heuristics.seeds:swap_nearest",
                     "DeepSeek + 2 heaviest/lightest-pack swaps, nearest target (seeds' parents)"),
    "swap_top2": ("eplbench.heuristics.seeds:swap_top2",
                  "DeepSeek + 2 swaps over top-2 x bottom-2 items (seed 002's packing)"),
    "swap_two_light": ("eplbench.heuristics.seeds:swap_two_light",
                       "DeepSeek + 2 swaps, lightest and second-lightest pack (seed 003's)"),
    "tail_peak_aware": ("eplbench.heuristics.seeds:tail_peak_aware",
                        "DeepSeek packing; seed 000's replication (peak-aware tail, 2x2 move)"),
    "tail_fixed": ("eplbench.heuristics.seeds:tail_fixed",
                   "DeepSeek packing; seed 002's replication (10% Sainte-Lague tail, 2x2 move)"),
    "tail_simulated": ("eplbench.heuristics.seeds:tail_simulated",
                       "DeepSeek packing; seed 003's replication (simulated tail, 2x2 move)"),
    "tail_cv": ("eplbench.heuristics.seeds:tail_cv",
                "DeepSeek packing; seed 004's replication (CV-scaled tail, 2x2 move)"),
}

ENTRY_POINT = "rebalance_experts"
# NAME + this suffix: the heuristic NAME, its plan relabelled to keep weights in place
RELABEL_SUFFIX = "+relabel"
# keywords by which a heuristic takes the plan in place: vLLM's name, then ours
OLD_PLAN_KEYWORDS = ("old_global_expert_indices", "old_phy2log")


@dataclass(frozen=True)
class Heuristic:
    """A loaded heuristic. `name` is what tables show: the built-in name or the spec as
    given; `old_plan_keyword` the keyword by which it takes the plan in place, or None."""

    name: str
    spec: str
    function: Callable = field(compare=False, repr=False)
    old_plan_keyword: str | None = None

    def __call__(self, weight, num_replicas, num_groups, num_nodes, num_gpus, old_plan=None):
        """The engines' call; `old_plan` ([L, P] tensor) is passed on, by the function's own
        keyword, only to a function that takes one."""
        if old_plan is None or self.old_plan_keyword is None:
            return self.function(weight, num_replicas, num_groups, num_nodes, num_gpus)
        return self.function(weight, num_replicas, num_groups, num_nodes, num_gpus,
                             **{self.old_plan_keyword: old_plan})


def list_heuristics() -> dict[str, str]:
    """Built-in names with their descriptions."""
    return {name: description for name, (_, description) in BUILTINS.items()}


def spec_kind(spec: str) -> str:
    """"builtin", "file" or "module" for a spec that names something; BadInput otherwise.

    Cheap and import-free, so a runner can refuse a typo before it starts any work.
    NAME+relabel is of NAME's kind.
    """
    spec = built_in_budget(spec.removesuffix(RELABEL_SUFFIX))[0]
    if spec in BUILTINS:
        return "builtin"
    if spec.endswith(".py") or Path(spec).is_file():
        if not Path(spec).is_file():
            raise BadInput(f"{spec}: no such file")
        return "file"
    if ":" in spec:
        return "module"
    raise BadInput(f"unknown heuristic {spec!r}: not a built-in ({', '.join(BUILTINS)}), "
                   f"not a .py file, not pkg.module:function")


def load_heuristic(spec: str) -> Heuristic:
    """Resolve a built-in name, a `path/to/file.py` or a `pkg.module:function`.

    NAME+relabel is NAME wrapped by `relabelled.relabelled`. Raises BadInput naming the
    spec and the problem when it cannot be loaded.
    """
    if spec.endswith(RELABEL_SUFFIX):
        from eplbench.heuristics.relabelled import relabelled

        inner = load_heuristic(spec.removesuffix(RELABEL_SUFFIX))
        return Heuristic(spec, spec, partial(relabelled, inner), OLD_PLAN_KEYWORDS[1])
    kind = spec_kind(spec)
    if kind == "builtin":
        name, budget = built_in_budget(spec)
        function = _import_target(BUILTINS[name][0], spec)
        if budget is not None:
            function = _with_budget(function, budget, spec)
    elif kind == "file":
        function = _load_file(Path(spec))
    else:
        function = _import_target(spec, spec)
    return Heuristic(spec, spec, function, old_plan_keyword(function))


def built_in_budget(spec: str) -> tuple[str, int | None]:
    """(built-in name, K) for `NAME@K` naming a built-in, else (spec, None)."""
    name, at, budget = spec.partition("@")
    if at and name in BUILTINS and budget.isdigit():
        return name, int(budget)
    return spec, None


def _with_budget(function: Callable, budget: int, spec: str) -> Callable:
    if "budget" not in inspect.signature(function).parameters:
        raise BadInput(f"{spec}: {spec.partition('@')[0]} takes no budget (@K)")
    return partial(function, budget=budget)


def absolute_spec(spec: str) -> str:
    """`spec` with a file's path made absolute (a worker may start elsewhere)."""
    base = spec.removesuffix(RELABEL_SUFFIX)
    if spec_kind(base) != "file":
        return spec
    return str(Path(base).resolve()) + spec[len(base):]


def old_plan_keyword(function: Callable) -> str | None:
    """The first of OLD_PLAN_KEYWORDS that `function` takes by keyword, else None (also
    for a function whose signature cannot be read, and for SGLang's form)."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return None
    keywords = [name for name, parameter in parameters.items()
                if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)]
    return next((name for name in OLD_PLAN_KEYWORDS if name in keywords), None)


def _load_file(path: Path) -> Callable:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    module_name = f"eplbench_user_{path.stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 - any failure of user code is reported as bad input
        del sys.modules[module_name]
        raise BadInput(f"{path}: import failed: {type(error).__name__}: {error}") from None
    return _entry(module, ENTRY_POINT, str(path))


def _import_target(target: str, spec: str) -> Callable:
    module_name, _, function_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001
        raise BadInput(f"{spec}: cannot import {module_name}: "
                       f"{type(error).__name__}: {error}") from None
    return _entry(module, function_name or ENTRY_POINT, spec)


def _entry(module, function_name: str, spec: str) -> Callable:
    function = getattr(module, function_name, None)
    if not callable(function):
        raise BadInput(f"{spec}: defines no callable {function_name}")
    return engine_form(function)


# SGLang's rebalance_experts (eplb_algorithms/deepseek_vec.py), by its parameter names
SGLANG_PARAMETERS = ("tokens_per_expert", "num_physical_experts", "num_local_physical_experts",
                     "num_groups", "num_nodes")


def engine_form(function: Callable) -> Callable:
    """`function` callable as `(weight, num_replicas, num_groups, num_nodes, num_gpus)`:
    itself, or SGLang's form adapted (see the module docstring)."""
    try:
        names = tuple(inspect.signature(function).parameters)
    except (TypeError, ValueError):  # no signature to read (a builtin): call it as it is
        return function
    if names[:len(SGLANG_PARAMETERS)] == SGLANG_PARAMETERS:
        return partial(_call_sglang, function, "enable_hierarchical" in names)
    return function


def _call_sglang(function: Callable, asks_hierarchy: bool, weight, num_replicas: int,
                 num_groups: int, num_nodes: int, num_gpus: int):
    """SGLang's form called with one step of loads ([1, L, E]) and P / num_gpus local slots."""
    extra = {"enable_hierarchical": num_groups % num_nodes == 0} if asks_hierarchy else {}
    return function(weight.unsqueeze(0), num_replicas, num_replicas // num_gpus, num_groups,
                    num_nodes, **extra)
