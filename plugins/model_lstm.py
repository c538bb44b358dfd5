"""LSTM model plugin: a recurrent network over the last ``window`` bars of features (PyTorch, CPU).

Input rows hold the scenario's features over the model's window of past bars, oldest first
(``input_window`` declares it; the feature pipeline builds the rows, ``lbml.features.sequence``),
so the same rows reach the model in training, backtest and paper. Architecture: per-feature
standardisation (mean and scale learned on the fit rows), ``num_layers`` LSTM layers of
``hidden_size`` units, a linear head on the last hidden state, a sigmoid.

- Training (PyTorch, float32): Adam on the (sample-weighted) binary cross-entropy, minibatches in
  an order drawn from ``random_state``; with an ``eval_set`` (the purged block at the end of the
  fold's training samples) it stops after ``patience`` epochs without a lower validation log loss
  and keeps the best epoch's weights. Deterministic: torch's generator is seeded inside a forked
  RNG state (the caller's global state is untouched), and ``n_threads`` is set only while fitting.
- Inference (NumPy, float64): the LSTM equations on the stored weights, one code path for a
  batch and for one row (``predict_up_one``), so the engine's per-bar predictions equal the batch
  predictions on the same rows to float64 rounding; torch is not imported to predict.
- Persistence: weights and the scaler in ``safetensors`` (tensors only, no code), the shape
  metadata in JSON, both hashed in the artifact manifest. Never ``torch.save``/pickle.
"""

import json
from contextlib import contextmanager
from numbers import Integral, Real
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy.special import expit
from sklearn.utils._param_validation import Interval

from lbml.errors import ArtifactError, ConfigError
from lbml.hookspecs import hookimpl
from lbml.models.base import ModelPlugin

WEIGHTS_FILE = "lstm.safetensors"
META_FILE = "lstm_meta.json"
_SCALE_FLOOR = 1e-12


class LSTMModel(ModelPlugin):
    """LSTM classifier over a window of past bars (binary: class 1 = price up over the label horizon)."""

    name = "lstm"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "window": [Interval(Integral, 1, None, closed="left")],
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "num_layers": [Interval(Integral, 1, 4, closed="both")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "n_threads": [Interval(Integral, 1, None, closed="left")],
        "random_state": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(
        self,
        window: int = 16,
        hidden_size: int = 16,
        num_layers: int = 1,
        dropout: float = 0.0,
        max_epochs: int = 30,
        batch_size: int = 256,
        learning_rate: float = 3e-3,
        weight_decay: float = 0.0,
        patience: int = 5,
        n_threads: int = 1,
        random_state: int = 0,
    ) -> None:
        self.window = window
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.n_threads = n_threads
        self.random_state = random_state

    def input_window(self) -> int:
        return int(self.window)

    # -- fit ------------------------------------------------------------------------------------
    def _sequences(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] % self.window:
            raise ValueError(f"lstm: rows of {X.shape[1:]} values are not {self.window} bars of features")
        return X.reshape(len(X), self.window, X.shape[1] // self.window)

    def fit(self, X, y, *, sample_weight=None, eval_set=None) -> "LSTMModel":
        seq = self._sequences(X)
        y = np.asarray(y)
        classes = np.unique(y)
        if not set(classes.tolist()) <= {0, 1} or len(classes) < 2:
            raise ValueError(f"lstm plugin needs binary labels 0/1 with both present, got {classes}")
        if not np.isfinite(seq).all():
            raise ValueError("lstm: training rows must be finite (drop warm-up rows first)")
        mean = seq.reshape(-1, seq.shape[2]).mean(axis=0)
        scale = seq.reshape(-1, seq.shape[2]).std(axis=0)
        scale = np.where(scale > _SCALE_FLOOR, scale, 1.0)
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        w = w / w.mean()
        val = None
        if eval_set is not None:
            val = ((self._sequences(eval_set[0]) - mean) / scale, np.asarray(eval_set[1]))
        weights, self.best_epoch_, self.n_epochs_ = self._train((seq - mean) / scale, y, w, val)
        self._set_state(weights, mean, scale)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = seq.shape[1] * seq.shape[2]
        return self

    def _train(self, seq, y, w, val) -> tuple[dict[str, np.ndarray], int, int]:
        with _torch_session(self.n_threads, self.random_state) as torch:
            net = _network(torch, seq.shape[2], self.hidden_size, self.num_layers, self.dropout)
            opt = torch.optim.Adam(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
            loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
            xs = torch.from_numpy(seq.astype(np.float32))
            ys = torch.from_numpy(y.astype(np.float32))
            ws = torch.from_numpy(w.astype(np.float32))
            if val is not None:
                xv = torch.from_numpy(val[0].astype(np.float32))
                yv = torch.from_numpy(val[1].astype(np.float32))
            rng = np.random.default_rng(self.random_state)
            best, best_loss, best_epoch, epoch = _weights(net), np.inf, 0, 0
            for epoch in range(1, self.max_epochs + 1):
                net.train()
                order = torch.from_numpy(rng.permutation(len(y)))
                for start in range(0, len(y), self.batch_size):
                    batch = order[start : start + self.batch_size]
                    opt.zero_grad()
                    loss = (loss_fn(net(xs[batch]), ys[batch]) * ws[batch]).mean()
                    loss.backward()
                    opt.step()
                if val is None:
                    best, best_epoch = None, epoch
                    continue
                net.eval()
                with torch.no_grad():
                    val_loss = float(loss_fn(net(xv), yv).mean())
                if val_loss < best_loss:
                    best, best_loss, best_epoch = _weights(net), val_loss, epoch
                elif epoch - best_epoch >= self.patience:
                    break
            return (best if best is not None else _weights(net)), best_epoch, epoch

    def _set_state(self, weights: dict[str, np.ndarray], mean: np.ndarray, scale: np.ndarray) -> None:
        self.weights_ = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        self.mean_ = np.asarray(mean, dtype=np.float64)
        self.scale_ = np.asarray(scale, dtype=np.float64)
        # float64 copies for inference; gates stacked as torch lays them out (input, forget, cell, output)
        self._layers = [
            (
                self.weights_[f"lstm.weight_ih_l{k}"].astype(np.float64).T.copy(),
                self.weights_[f"lstm.weight_hh_l{k}"].astype(np.float64).T.copy(),
                self.weights_[f"lstm.bias_ih_l{k}"].astype(np.float64) + self.weights_[f"lstm.bias_hh_l{k}"].astype(np.float64),
            )
            for k in range(self.num_layers)
        ]
        self._head = (self.weights_["head.weight"].astype(np.float64)[0], float(self.weights_["head.bias"][0]))

    # -- predict --------------------------------------------------------------------------------
    def _up(self, X: np.ndarray) -> np.ndarray:
        seq = np.nan_to_num((self._sequences(X) - self.mean_) / self.scale_, nan=0.0, posinf=0.0, neginf=0.0)
        H = self.hidden_size
        inputs = seq
        for w_ih, w_hh, bias in self._layers:
            pre = inputs @ w_ih + bias
            h = np.zeros((len(seq), H))
            c = np.zeros((len(seq), H))
            outputs = []
            for t in range(self.window):
                gates = pre[:, t] + h @ w_hh
                sig = expit(gates)
                c = sig[:, H : 2 * H] * c + sig[:, :H] * np.tanh(gates[:, 2 * H : 3 * H])
                h = sig[:, 3 * H :] * np.tanh(c)
                outputs.append(h)
            inputs = np.stack(outputs, axis=1)
        head_w, head_b = self._head
        return expit(h @ head_w + head_b)

    def predict_proba(self, X) -> np.ndarray:
        self._check_fitted()
        up = self._up(X)
        return np.column_stack([1.0 - up, up])

    def predict_up_one(self, x: np.ndarray) -> float:
        return float(self._up(x.reshape(1, -1))[0])

    # -- persistence ----------------------------------------------------------------------------
    def save(self, directory: Path) -> list[Path]:
        from safetensors.numpy import save_file

        self._check_fitted()
        tensors = dict(self.weights_) | {"scaler.mean": self.mean_, "scaler.scale": self.scale_}
        weights_path = Path(directory) / WEIGHTS_FILE
        save_file(tensors, str(weights_path))
        meta_path = Path(directory) / META_FILE
        meta = {"n_features_in": self.n_features_in_, "best_epoch": self.best_epoch_, "n_epochs": self.n_epochs_}
        meta_path.write_text(json.dumps(meta, indent=2))
        return [weights_path, meta_path]

    @classmethod
    def load(cls, directory: Path, params: dict[str, Any]) -> "LSTMModel":
        from safetensors.numpy import load_file

        model = cls(**params)
        try:
            tensors = load_file(str(Path(directory) / WEIGHTS_FILE))
            meta = json.loads((Path(directory) / META_FILE).read_text())
            mean, scale = tensors.pop("scaler.mean"), tensors.pop("scaler.scale")
            expected = _shapes(len(mean), model.hidden_size, model.num_layers)
            shapes = {k: tuple(v.shape) for k, v in tensors.items()}
            if shapes != expected:
                raise ValueError(f"weights {shapes} do not match the parameters' {expected}")
            model._set_state(tensors, mean, scale)
            model.n_features_in_ = int(meta["n_features_in"])
            model.best_epoch_ = int(meta["best_epoch"])
            model.n_epochs_ = int(meta["n_epochs"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{directory}: cannot read LSTM model: {exc}".splitlines()[0]) from None
        if model.n_features_in_ != len(mean) * model.window:
            raise ArtifactError(f"{directory}: LSTM model has {model.n_features_in_} inputs, not {len(mean)} × {model.window}")
        model.classes_ = np.array([0, 1])
        return model


@contextmanager
def _torch_session(threads: int, seed: int):
    try:
        import torch
    except ImportError as exc:  # a plugin that cannot train must say why, not crash later
        raise ConfigError(f"model.plugin: lstm needs PyTorch ({exc})") from None
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield torch
    finally:
        torch.set_num_threads(previous)


def _network(torch, n_inputs: int, hidden: int, layers: int, dropout: float):
    class _Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(n_inputs, hidden, num_layers=layers, batch_first=True,
                                      dropout=dropout if layers > 1 else 0.0)
            self.head = torch.nn.Linear(hidden, 1)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.head(out[:, -1]).squeeze(-1)

    return _Net()


def _weights(net) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


def _shapes(n_inputs: int, hidden: int, layers: int) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for k in range(layers):
        width = n_inputs if k == 0 else hidden
        out |= {
            f"lstm.weight_ih_l{k}": (4 * hidden, width),
            f"lstm.weight_hh_l{k}": (4 * hidden, hidden),
            f"lstm.bias_ih_l{k}": (4 * hidden,),
            f"lstm.bias_hh_l{k}": (4 * hidden,),
        }
    return out | {"head.weight": (1, hidden), "head.bias": (1,)}


@hookimpl
def lbml_register_models() -> list[type]:
    return [LSTMModel]
