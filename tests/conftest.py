import numpy as np
import pytest
import torch

import shrinknet

ACTS = ["sigmoid", "tanh", "relu", "gelu"]
OUTS = ["sigmoid", "softmax", "identity"]


def random_net(hidden, act="sigmoid", out="sigmoid", n_in=4, n_out=3, seed=0):
    """A small float64 MLP with weights large enough that neurons interact non-trivially."""
    m = shrinknet.MLP([n_in, *hidden, n_out], act, out, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lin in m.layers:
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g, dtype=torch.float64) * 1.5)
            lin.bias.copy_(torch.randn(lin.bias.shape, generator=g, dtype=torch.float64) * 0.5)
    return m


def random_data(n=40, n_in=4, n_out=3, seed=0, classes=True):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in))
    if classes:
        T = np.eye(n_out)[rng.integers(0, n_out, n)]
    else:
        T = rng.uniform(0, 1, (n, n_out))
    return torch.tensor(X), torch.tensor(T)


@pytest.fixture
def net_and_data():
    return random_net([6, 5]), *random_data()


# ---- models other than the MLP class (issue: any nn.Module) ----------------------------
def _randomize(model, seed):
    """Non-trivial weights and BatchNorm statistics (so BN of a zero channel is not zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g, dtype=m.running_mean.dtype))
                m.running_var.copy_(torch.rand(m.num_features, generator=g, dtype=m.running_var.dtype) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g, dtype=m.weight.dtype))
                m.bias.copy_(torch.randn(m.num_features, generator=g, dtype=m.bias.dtype))
    return model.eval()


def tiny_cnn(seed=0, act=torch.nn.ReLU):
    """Conv-BN-act-pool, Conv-BN-act-pool, Flatten, Linear-act, Linear: input (1, 8, 8), 4 classes."""
    torch.manual_seed(seed)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), act(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 5, 3, padding=1), torch.nn.BatchNorm2d(5), act(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(5 * 2 * 2, 6), act(), torch.nn.Linear(6, 4)).double()
    return _randomize(m, seed)


class TinyResNet(torch.nn.Module):
    """A stem conv, one residual block (conv1 -> BN -> ReLU -> conv2 -> BN, plus the skip), and an MLP
    head through a flatten. conv1's channels are internal to the block; stem and conv2 are coupled."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn0 = torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4)
        self.conv1, self.bn1 = torch.nn.Conv2d(4, 3, 3, padding=1), torch.nn.BatchNorm2d(3)
        self.conv2, self.bn2 = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4)
        self.fc1, self.fc2 = torch.nn.Linear(4 * 4 * 4, 7), torch.nn.Linear(7, 3)

    def forward(self, x):
        h = torch.relu(self.bn0(self.stem(x)))
        r = torch.relu(self.bn1(self.conv1(h)))
        h = torch.relu(self.bn2(self.conv2(r)) + h)
        h = torch.nn.functional.max_pool2d(h, 2)
        return self.fc2(torch.relu(self.fc1(h.flatten(1))))


def tiny_resnet(seed=0):
    torch.manual_seed(seed)
    return _randomize(TinyResNet().double(), seed)


def image_data(n=24, shape=(1, 8, 8), n_out=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, n_out, (n,), generator=g)
    return X, y


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: a second thread only adds contention on a shared machine (the old count comes back)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
