"""ResNet-18 (He et al., 2016) for small images, written in torch.

PyPI's torchvision does not import beside the CPU torch build this project
uses, so the network is defined here: the CIFAR variant (3 x 3 stem, no max
pooling) with a configurable number of input channels, classes and width.
"""

from __future__ import annotations

from torch import nn
from torch.nn import functional as F


class BasicBlock(nn.Module):
    """Two 3 x 3 convolutions with batch norm and a residual connection."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 returning class logits.

    Parameters
    ----------
    n_classes : int
        Number of output logits (inferred from the labels by
        :class:`~skggda.models.SeededNeuralNetClassifier`).
    in_channels : int, default=3
        Image channels (inferred from ``X`` of shape ``(n, C, H, W)``).
    width : int, default=64
        Channels of the first stage (64 is the standard network; smaller
        widths give cheap networks of the same shape for tests).

    Examples
    --------
    >>> import torch
    >>> from skggda.models import ResNet18
    >>> net = ResNet18(n_classes=10, in_channels=1, width=8)
    >>> net(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, n_classes, in_channels=3, width=64):
        super().__init__()
        self.stem = nn.Conv2d(int(in_channels), width, 3, stride=1, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        planes, layers = width, []
        for stage, stride in enumerate((1, 2, 2, 2)):
            out = width * 2 ** stage
            layers.append(nn.Sequential(BasicBlock(planes, out, stride), BasicBlock(out, out)))
            planes = out
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.head = nn.Linear(planes, int(n_classes))

    def forward(self, x):
        """Class logits of a batch of images.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, in_channels, height, width)
            Images.

        Returns
        -------
        logits : torch.Tensor of shape (batch, n_classes)
            The head's output on the globally pooled last stage.
        """
        out = F.relu(self.bn(self.stem(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.head(F.adaptive_avg_pool2d(out, 1).flatten(1))
