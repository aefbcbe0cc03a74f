import numpy as np
import pytest
import torch

from eplbench import BadInput, Topology
from eplbench.problem import Policy, as_weight_matrix


def test_topology_accepts_deepseek_v3_shape():
    topo = Topology(288, 8, 4, 32)
    assert (topo.slots_per_gpu, topo.gpus_per_node, topo.slots_per_node) == (9, 8, 72)
    topo.validate_for(256, Policy.HIERARCHICAL)


@pytest.mark.parametrize("fields, message", [
    ((16, 4, 2, 0), "num_gpus must be a positive integer"),
    ((16, 4, 2, 6), "num_replicas=16 is not a multiple of num_gpus=6"),
    ((16, 4, 3, 8), "num_gpus=8 is not a multiple of num_nodes=3"),
    ((16.0, 4, 2, 8), "num_replicas must be a positive integer"),
])
def test_topology_names_the_broken_precondition(fields, message):
    with pytest.raises(BadInput, match=message):
        Topology(*fields)


def test_validate_for_checks_experts_and_hierarchy():
    topo = Topology(16, 3, 2, 8)
    with pytest.raises(BadInput, match="smaller than num_experts=17"):
        topo.validate_for(17)
    topo.validate_for(12, "global")
    with pytest.raises(BadInput, match="num_groups=3 is not a multiple of num_nodes=2"):
        topo.validate_for(12, "hierarchical")
    with pytest.raises(BadInput, match="num_experts=10 is not a multiple of num_groups=3"):
        topo.validate_for(10, "hierarchical")
    with pytest.raises(BadInput, match="unknown policy"):
        topo.validate_for(12, "diagonal")


@pytest.mark.parametrize("value, message", [
    ([1, 2, 3], "expected a \\[layers, experts\\] matrix, got 1 dimensions"),
    (np.zeros((0, 4)), "empty matrix"),
    ([[1.0, float("nan")]], "NaN or infinite"),
    ([[1, -2]], "negative values"),
    ([[1.5, 2]], "fractional values"),
    ([[1, 2], [3]], "ragged"),
])
def test_weight_matrix_refusals(value, message):
    with pytest.raises(BadInput, match=message):
        as_weight_matrix(value, source="w.npy")


def test_weight_matrix_accepts_tensors_and_integral_floats():
    out = as_weight_matrix(torch.tensor([[1.0, 2.0]]))
    assert out.dtype == np.int64 and out.tolist() == [[1, 2]]


def test_weight_values_past_int64_are_refused_with_the_value():
    from eplbench.problem import as_weight_matrix

    with pytest.raises(BadInput, match=r"9223372036854775813 at \[0, 1\] is past int64"):
        as_weight_matrix(np.array([[1, 2**63 + 5]], dtype=np.uint64))
    with pytest.raises(BadInput, match=r"-3 at \[1, 0\]"):
        as_weight_matrix([[1, 2], [-3, 4]])


def test_bfloat16_integer_loads_are_read():
    import torch

    from eplbench.problem import as_weight_matrix

    weight = torch.tensor([[3.0, 128.0]], dtype=torch.bfloat16)
    assert as_weight_matrix(weight).tolist() == [[3, 128]]
    with pytest.raises(BadInput, match="fractional"):
        as_weight_matrix(torch.tensor([[1.5]], dtype=torch.bfloat16))
