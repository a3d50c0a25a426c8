import torch

from harness.types import ClientUpdate
from harness.default_plugins.aggregators.fedavg import FedAvg


def test_fedavg_is_the_sample_weighted_average():
    g = {"a": torch.zeros(2), "b": torch.zeros(1, 2)}
    u1 = ClientUpdate(0, 1, {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([[3.0, 0.0]])})
    u2 = ClientUpdate(1, 3, {"a": torch.tensor([5.0, 6.0]), "b": torch.tensor([[-1.0, 4.0]])})
    out = FedAvg().aggregate(server_round=1, global_state=g, updates=[u1, u2], num_clients_total=4).state
    # by hand: (1*u1 + 3*u2) / 4
    assert torch.allclose(out["a"], torch.tensor([4.0, 5.0]))
    assert torch.allclose(out["b"], torch.tensor([[0.0, 3.0]]))
    assert out["a"].dtype == torch.float32


def test_fedavg_equal_weights_is_the_plain_mean():
    g = {"w": torch.zeros(3)}
    ups = [ClientUpdate(i, 5, {"w": torch.full((3,), float(i))}) for i in range(4)]
    out = FedAvg().aggregate(server_round=1, global_state=g, updates=ups, num_clients_total=4).state
    assert torch.allclose(out["w"], torch.full((3,), 1.5))
