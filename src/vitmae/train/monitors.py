"""Monitors of MAE pretraining: is the encoder learning anything useful, before fine-tuning?

The engine calls each monitor at the end of an epoch (`fit(..., monitors=...)`: rank 0, eval
mode, a forked RNG) as `monitor(model, epoch) -> {name: value}`, {} when it is not due, and
logs what they return as one `monitor` record of metrics.jsonl.
- `KNNMonitor`: k-NN top-1 of the encoder's features of the whole, unmasked image on a
  labelled train/test split. The k training images most cosine-similar to a test image vote
  for their label with weight exp(sim / t) (Wu et al. 2018, "Unsupervised Feature Learning via
  Non-Parametric Instance Discrimination"; DINO's `knn_classifier`). Optionally a linear probe
  (softmax regression, L-BFGS) on the same features. Beside them the trivial baseline: the
  share of the test split's most frequent class.
- `ReconMonitor`: the MAE loss of a fixed validation batch under a fixed mask, and the
  reconstruction grid of its first images (`vitmae.viz.reconstruction`) as `recon/epoch-NNN.png`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from vitmae.config import Config, ConfigError
from vitmae.data import build_dataset
from vitmae.data.registry import FirstItems
from vitmae.viz.figures import denormalize, save_grid
from vitmae.viz.reconstruction import mae_reconstruction, middle_slices

GRID_IMAGES = 4  # rows of the reconstruction grid
PROBE_ITERS = 100  # L-BFGS iterations of the linear probe
PROBE_L2 = 1e-4  # weight decay of the linear probe (on standardised features)


def due(epoch: int, every: int, last: int) -> bool:
    """Every `every` epochs and after the last one; never when every is 0."""
    return every > 0 and (epoch % every == 0 or epoch == last)


@torch.no_grad()
def extract_features(encoder, dataset, batch_size: int, device: torch.device,
                     num_workers: int = 0) -> tuple[Tensor, Tensor]:
    """Every image of `dataset`, unmasked -> pooled features (N, D) float32 on the CPU and
    labels (N,) int64."""
    feats, labels = [], []
    for imgs, targets in DataLoader(dataset, batch_size, num_workers=num_workers):
        tokens = encoder.forward_features(imgs.to(device))  # (B, 1+L, D)
        # a copy: the class token is a view that would keep all (B, 1+L, D) tokens alive
        feats.append(encoder.pool(tokens).float().cpu().clone())  # (B, D)
        labels.append(torch.as_tensor(targets).long())  # (B,)
    return torch.cat(feats), torch.cat(labels)


def knn_classify(bank: Tensor, bank_labels: Tensor, queries: Tensor, num_classes: int,
                 k: int = 20, t: float = 0.07, chunk: int = 1024) -> Tensor:
    """bank (N, D) and queries (M, D), both L2-normalised; bank_labels (N,) -> (M,) labels.

    Each query's k nearest bank rows (cosine similarity) vote for their label with weight
    exp(sim / t); the label with the largest total wins.
    """
    k = min(k, len(bank))
    preds = []
    for q in queries.split(chunk):  # (m, D): bounds the (m, N) similarity matrix
        sim, idx = (q @ bank.T).topk(k, dim=1)  # (m, k) similarities and bank rows
        votes = torch.zeros(len(q), num_classes, dtype=sim.dtype)  # (m, K)
        votes.scatter_add_(1, bank_labels[idx], (sim / t).exp())  # (m, K) weighted votes
        preds.append(votes.argmax(1))  # (m,)
    return torch.cat(preds)


def linear_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, num_classes: int) -> Tensor:
    """Softmax regression on standardised features (as MAE's linear probe normalises with a
    BatchNorm without affine), full batch L-BFGS from zero weights, so deterministic.

    train_x (N, D), train_y (N,), test_x (M, D) -> predicted labels (M,).
    """
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6  # (D,) each
    x = (train_x - mean) / std  # (N, D)
    W = torch.zeros(x.shape[1], num_classes, requires_grad=True)  # (D, K)
    b = torch.zeros(num_classes, requires_grad=True)  # (K,)
    opt = torch.optim.LBFGS([W, b], max_iter=PROBE_ITERS, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ W + b, train_y) + PROBE_L2 * W.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return (((test_x - mean) / std) @ W + b).argmax(1)  # (M,)


def check_labelled(dataset, key: str) -> None:
    """Raise a ConfigError naming `key` unless the items' targets are class ids."""
    target = torch.as_tensor(dataset[0][1])
    if target.ndim != 0 or target.is_floating_point():
        raise ConfigError(f"{key}: the k-NN monitor needs a class label per image; this data "
                          f"set's targets have shape {tuple(target.shape)} (masks or label "
                          "vectors); set it to 0")


class KNNMonitor:
    """k-NN top-1 (and optionally a linear probe) of the MAE encoder's features."""

    def __init__(self, bank_set, test_set, every: int, last: int, k: int = 20,
                 t: float = 0.07, probe: bool = False, batch_size: int = 64,
                 num_workers: int = 0):
        check_labelled(bank_set, "pretrain.knn_every")
        self.bank_set, self.test_set = bank_set, test_set
        self.every, self.last, self.k, self.t, self.probe = every, last, k, t, probe
        self.batch_size, self.num_workers = batch_size, num_workers

    def __call__(self, model, epoch: int) -> dict:
        if not due(epoch, self.every, self.last):
            return {}
        device = next(model.parameters()).device
        bank, bank_y = extract_features(model.encoder, self.bank_set, self.batch_size, device,
                                        self.num_workers)
        test, test_y = extract_features(model.encoder, self.test_set, self.batch_size, device,
                                        self.num_workers)
        K = int(max(bank_y.max(), test_y.max())) + 1
        pred = knn_classify(F.normalize(bank, dim=1), bank_y, F.normalize(test, dim=1), K,
                            self.k, self.t)
        out = {"knn_top1": (pred == test_y).double().mean().item(),
               "baseline_knn_top1": torch.bincount(test_y).max().item() / len(test_y)}
        if self.probe:
            pred = linear_probe(bank, bank_y, test, K)
            out["probe_top1"] = (pred == test_y).double().mean().item()
            out["baseline_probe_top1"] = out["baseline_knn_top1"]
        return out


class ReconMonitor:
    """The MAE loss of a fixed validation batch and its reconstruction grid, in the run folder."""

    def __init__(self, val_set, every: int, last: int, folder: str | Path, n: int = 64,
                 seed: int = 0):
        items = [val_set[i] for i in range(min(n, len(val_set)))]
        self.imgs = torch.stack([item[0] for item in items])  # (n, C, H, W)
        self.mean, self.std = val_set.mean, val_set.std
        self.every, self.last, self.folder, self.seed = every, last, Path(folder), seed

    @torch.no_grad()
    def __call__(self, model, epoch: int) -> dict:
        if not due(epoch, self.every, self.last):
            return {}
        imgs = self.imgs.to(next(model.parameters()).device)
        loss, _, _ = model(imgs, generator=torch.Generator().manual_seed(self.seed))
        panels = middle_slices(mae_reconstruction(model, imgs[:GRID_IMAGES], seed=self.seed))
        panels = {k: denormalize(v.float().cpu(), self.mean, self.std) for k, v in panels.items()}
        name = f"recon/epoch-{epoch:03d}.png"
        save_grid(panels, self.folder / name, f"epoch {epoch}")
        return {"recon_loss": loss.item(), "recon_png": name}


def pretrain_monitors(cfg: Config, val_set, folder: str | Path) -> list:
    """The monitors `cfg.pretrain` asks for; the k-NN bank is the training split without
    augmentation, its first `knn_train` (and `data.subset`) images."""
    o, d, epochs = cfg.pretrain, cfg.data, cfg.pretrain.optim.epochs
    monitors: list = []
    if o.knn_every:
        bank = build_dataset(d, d.train_split, train=False)
        limits = [n for n in (o.knn_train, d.subset) if n is not None]
        if limits:
            bank = FirstItems(bank, min(limits))
        monitors.append(KNNMonitor(bank, val_set, o.knn_every, epochs, o.knn_k, o.knn_t,
                                   o.probe, d.batch_size, d.num_workers))
    if o.recon_every:
        monitors.append(ReconMonitor(val_set, o.recon_every, epochs, folder, d.batch_size,
                                     cfg.run.seed))
    return monitors
