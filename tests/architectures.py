"""Small classifiers built in the tests (never downloaded): shapes Grad-CAM meets in practice."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class BasicBlock(nn.Module):
    """A ResNet basic block with an in-place ReLU after the residual sum."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(c_in, c_out, stride),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride), nn.BatchNorm2d(c_out))
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNetLike(nn.Module):
    def __init__(self, n_classes: int = 5, width: int = 8) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, width, stride=2)
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.layer3 = BasicBlock(2 * width, 4 * width, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class VGGLike(nn.Module):
    """Fixed input size (64 x 64): the classifier flattens the feature map."""

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 8 * 8, 32),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(32, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Branchy(nn.Module):
    """Two parallel branches concatenated (Inception-like), then a global-pool head."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, 8, stride=2)
        self.branch_a = nn.Sequential(nn.Conv2d(8, 8, 1), nn.ReLU())
        self.branch_b = nn.Sequential(nn.Conv2d(8, 8, 5, padding=2), nn.Tanh())
        self.mix = conv_bn_relu(16, 16, stride=2)
        self.head = nn.Linear(16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.mix(torch.cat([self.branch_a(x), self.branch_b(x)], dim=1))
        return self.head(x.mean(dim=(2, 3)))


class SingleLogit(nn.Module):
    """A sigmoid classifier: one logit per image, shape (N, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(conv_bn_relu(3, 8, 2), conv_bn_relu(8, 16, 2))
        self.fc = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).amax(dim=(2, 3)))


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BatchNorm layers non-trivial running statistics so eval mode matters."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model


def build(name: str, seed: int = 0) -> nn.Module:
    """Build one of the test architectures with fixed random weights."""
    torch.manual_seed(seed)
    factories = {
        "resnet": ResNetLike,
        "vgg": VGGLike,
        "branchy": Branchy,
        "single_logit": SingleLogit,
    }
    return randomise_batchnorm(factories[name](), seed)


class LateSkip(nn.Module):
    """A head that also reads pooled stem features: the layer's output is not all it sees."""

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, 8, stride=2)
        self.body = conv_bn_relu(8, 8, stride=2)
        self.fc = nn.Linear(8, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        return self.fc(self.body(stem).mean(dim=(2, 3)) + stem.mean(dim=(2, 3)))
