"""Per-element objectives: which map, and which of its positions, each batch element maximizes.

Every batch element carries its own objective as two arrays the compiled step consumes:
a one-hot over the layer's maps, and a spatial weight over the map's positions. The channel
objective (the articles' loss) weights every position by 1/(h*w), i.e. the map's mean activation;
the neuron objective puts weight 1 on one position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Objectives:
    map_index: np.ndarray  # (B,) int
    channel_onehot: np.ndarray  # (B, n_maps) float32
    spatial_weight: np.ndarray  # (B, h, w) float32

    def __len__(self) -> int:
        return len(self.map_index)

    def take(self, rows: np.ndarray) -> Objectives:
        return Objectives(
            self.map_index[rows], self.channel_onehot[rows], self.spatial_weight[rows]
        )


def channel_objectives(map_indices: np.ndarray, layer_shape: tuple[int, int, int]) -> Objectives:
    """Maximize the mean activation of map `map_indices[b]` for element b.

    `layer_shape` is the layer's output shape (h, w, n_maps) from `oiplab.model.layer_shapes`.
    """
    h, w, c = layer_shape
    map_indices = np.asarray(map_indices, dtype=np.int64)
    _check_maps(map_indices, c)
    onehot = np.eye(c, dtype=np.float32)[map_indices]
    spatial = np.full((len(map_indices), h, w), 1.0 / (h * w), dtype=np.float32)
    return Objectives(map_indices, onehot, spatial)


def neuron_objectives(
    map_indices: np.ndarray, positions: np.ndarray, layer_shape: tuple[int, int, int]
) -> Objectives:
    """Maximize one node, at `positions[b]` = (row, col), of map `map_indices[b]`."""
    h, w, c = layer_shape
    map_indices = np.asarray(map_indices, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
    _check_maps(map_indices, c)
    if ((positions < 0) | (positions >= (h, w))).any():
        raise ValueError(f"neuron positions must lie in a {h}x{w} map, got {positions.tolist()}")
    onehot = np.eye(c, dtype=np.float32)[map_indices]
    spatial = np.zeros((len(map_indices), h, w), dtype=np.float32)
    spatial[np.arange(len(map_indices)), positions[:, 0], positions[:, 1]] = 1.0
    return Objectives(map_indices, onehot, spatial)


def _check_maps(map_indices: np.ndarray, n_maps: int) -> None:
    bad = map_indices[(map_indices < 0) | (map_indices >= n_maps)]
    if bad.size:
        raise ValueError(f"map indices {sorted(set(bad.tolist()))} outside 0..{n_maps - 1}")
