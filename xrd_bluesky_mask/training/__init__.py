"""Training the U-Net: tile datasets, the train loop, metrics."""

from .dataset import TileSet, tiles_from_pair
from .loop import TrainConfig, TrainResult, train
from .operating_point import operating_point

__all__ = [
    "TileSet", "TrainConfig", "TrainResult", "operating_point",
    "tiles_from_pair", "train",
]
