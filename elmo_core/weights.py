"""Read and write ELMo weights in the official bilm-tf HDF5 layout.

TensorFlow conventions translated here (see docs/elmo-format.md of the shared folder):
  * ``char_embed`` has 261 rows; a zero row is prepended for padding id 0.
  * ``CNN/W_cnn_i`` is ``(1, width, char_dim, n_filters)``; ``Conv1d`` wants ``(n_filters, char_dim, width)``.
  * dense weights are ``(in, out)``; ``nn.Linear`` stores ``(out, in)``.
  * LSTM ``W_0`` maps ``[input, h_prev]`` to gates ``i, j, f, o``; TF adds 1.0 to ``f`` at run time.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from .bilm import ElmoBiLm
from .errors import ElmoFileError
from .io import atomic_path, check_free_space
from .options import load_options

FORGET_BIAS = 1.0


def _lstm_prefix(direction: int, layer: int) -> str:
    return f"RNN_{direction}/RNN/MultiRNNCell/Cell{layer}/LSTMCell"


class _Reader:
    """Reads datasets by name, turning every failure into an :class:`ElmoFileError`."""

    def __init__(self, handle: h5py.File, path: Path):
        self.handle, self.path = handle, path

    def read(self, name: str, expected_shape: tuple[int, ...]) -> np.ndarray:
        if name not in self.handle:
            raise ElmoFileError(f"{self.path}: dataset '{name}' is missing")
        dataset = self.handle[name]
        if not isinstance(dataset, h5py.Dataset):
            raise ElmoFileError(f"{self.path}: '{name}' is a group, expected a dataset")
        if tuple(dataset.shape) != tuple(expected_shape):
            raise ElmoFileError(
                f"{self.path}: dataset '{name}' has shape {tuple(dataset.shape)}, "
                f"expected {tuple(expected_shape)} from the options"
            )
        try:
            return np.asarray(dataset[...], dtype=np.float32)
        except OSError as err:  # truncated file: the header is there, the data is not
            raise ElmoFileError(
                f"{self.path}: dataset '{name}' cannot be read, the file looks truncated ({err})"
            ) from None


def _open_hdf5(path: Path, mode: str = "r") -> h5py.File:
    if mode == "r" and path.is_dir():
        raise ElmoFileError(f"{path}: is a directory (expected an HDF5 weight file)")
    if mode == "r" and not path.is_file():
        raise ElmoFileError(f"{path}: weight file not found")
    try:
        return h5py.File(path, mode)
    except OSError as err:
        if mode == "r" and not h5py.is_hdf5(path):
            raise ElmoFileError(f"{path}: not an HDF5 file") from None
        raise ElmoFileError(f"{path}: cannot open the HDF5 file, it looks truncated or damaged ({err})") from None


def _copy(param: torch.Tensor, value: np.ndarray) -> None:
    with torch.no_grad():
        param.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def load_weights(bilm: ElmoBiLm, path: str | Path) -> None:
    """Fill ``bilm``'s parameters from an official HDF5 weight file, checking every shape."""
    path = Path(path)
    opts = bilm.options
    cc, lo = opts.char_cnn, opts.lstm
    with _open_hdf5(path) as handle:
        reader = _Reader(handle, path)
        embed = reader.read("char_embed", (261, cc.char_dim))
        _copy(bilm.char_cnn.char_embedding.weight, np.concatenate([np.zeros((1, cc.char_dim), np.float32), embed]))
        for i, ((width, n), conv) in enumerate(zip(cc.filters, bilm.char_cnn.convolutions)):
            w = reader.read(f"CNN/W_cnn_{i}", (1, width, cc.char_dim, n))
            _copy(conv.weight, w[0].transpose(2, 1, 0))
            _copy(conv.bias, reader.read(f"CNN/b_cnn_{i}", (n,)))
        d = cc.n_filters
        for k, highway in enumerate(bilm.char_cnn.highways):
            for part, linear in (("carry", highway.carry), ("transform", highway.transform)):
                _copy(linear.weight, reader.read(f"CNN_high_{k}/W_{part}", (d, d)).T)
                _copy(linear.bias, reader.read(f"CNN_high_{k}/b_{part}", (d,)))
        _copy(bilm.char_cnn.projection.weight, reader.read("CNN_proj/W_proj", (d, lo.projection_dim)).T)
        _copy(bilm.char_cnn.projection.bias, reader.read("CNN_proj/b_proj", (lo.projection_dim,)))
        for direction, layers in enumerate((bilm.forward_layers, bilm.backward_layers)):
            for k, layer in enumerate(layers):
                prefix = _lstm_prefix(direction, k)
                w = reader.read(f"{prefix}/W_0", (layer.input_dim + lo.projection_dim, 4 * lo.dim))
                _copy(layer.input_linear.weight, w[: layer.input_dim].T)
                _copy(layer.state_linear.weight, w[layer.input_dim :].T)
                bias = reader.read(f"{prefix}/B", (4 * lo.dim,)).copy()
                bias[2 * lo.dim : 3 * lo.dim] += FORGET_BIAS
                _copy(layer.input_linear.bias, bias)
                _copy(layer.projection.weight, reader.read(f"{prefix}/W_P_0", (lo.dim, lo.projection_dim)).T)
    bilm.type_cache.clear()


def save_weights(bilm: ElmoBiLm, path: str | Path) -> None:
    """Write ``bilm``'s parameters in the official layout (the inverse of :func:`load_weights`),
    atomically (``PATH.part`` then rename)."""
    path = Path(path)
    lo = bilm.options.lstm

    def array(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().float().numpy()

    check_free_space(path, 4 * sum(p.numel() for p in bilm.parameters()) + (64 << 10))  # h5py must not meet ENOSPC
    with atomic_path(path) as partial, _open_hdf5(partial, "w") as out:
        out["char_embed"] = array(bilm.char_cnn.char_embedding.weight)[1:]
        for i, conv in enumerate(bilm.char_cnn.convolutions):
            out[f"CNN/W_cnn_{i}"] = array(conv.weight).transpose(2, 1, 0)[None]
            out[f"CNN/b_cnn_{i}"] = array(conv.bias)
        for k, highway in enumerate(bilm.char_cnn.highways):
            for part, linear in (("carry", highway.carry), ("transform", highway.transform)):
                out[f"CNN_high_{k}/W_{part}"] = array(linear.weight).T
                out[f"CNN_high_{k}/b_{part}"] = array(linear.bias)
        out["CNN_proj/W_proj"] = array(bilm.char_cnn.projection.weight).T
        out["CNN_proj/b_proj"] = array(bilm.char_cnn.projection.bias)
        for direction, layers in enumerate((bilm.forward_layers, bilm.backward_layers)):
            for k, layer in enumerate(layers):
                prefix = _lstm_prefix(direction, k)
                out[f"{prefix}/W_0"] = np.concatenate(
                    [array(layer.input_linear.weight).T, array(layer.state_linear.weight).T]
                )
                bias = array(layer.input_linear.bias).copy()
                bias[2 * lo.dim : 3 * lo.dim] -= FORGET_BIAS
                out[f"{prefix}/B"] = bias
                out[f"{prefix}/W_P_0"] = array(layer.projection.weight).T


def check_model_files(options: str | Path, weights: str | Path) -> None:
    """Raise :class:`ElmoFileError` unless the options parse and the weight file holds every
    dataset they imply, with the right shape (the files are read into a throw-away model)."""
    load_weights(ElmoBiLm(load_options(options), type_cache_size=0), weights)
