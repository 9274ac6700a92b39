"""A small Fashion-MNIST classifier: prompt-adherence judge and domain-FID feature extractor."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from migm_shortcut.modeling import PretrainedModule


@dataclass
class ClassifierConfig:
    channels: int = 24
    feature_dim: int = 128
    num_classes: int = 10
    dropout: float = 0.3


class ImageClassifier(PretrainedModule):
    """Input: N x 1 x 28 x 28 in [-1, 1]. ``features`` gives the penultimate layer."""

    config_class = ClassifierConfig
    model_type = "fashion-classifier"

    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__(config)
        c = config.channels

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.MaxPool2d(2),
            )

        self.body = nn.Sequential(block(1, c), block(c, 2 * c), block(2 * c, 4 * c), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.neck = nn.Sequential(nn.Linear(4 * c, config.feature_dim), nn.ReLU())
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(config.feature_dim, config.num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.neck(self.body(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(images)))

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        device = next(self.parameters()).device
        return torch.cat([self(images[i : i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(images), batch_size)])

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor | list[int]) -> float:
        """Share of ``images`` classified as ``labels`` (eval mode)."""
        return (self.eval().predict(images) == torch.as_tensor(labels).cpu()).float().mean().item()
