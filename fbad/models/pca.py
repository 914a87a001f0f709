"""PCA reconstruction baseline: the non-deep yardstick an autoencoder has to beat.

Stored as buffers (mean, components) so `torch.save(model.state_dict())` and
`torch.load(..., weights_only=True)` round-trip it, and `forward` reconstructs like an autoencoder so
the same scoring code applies.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn


class PCABaseline(nn.Module):
    def __init__(self, n_components: int = 32, whiten: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.n_components = int(n_components)
        self.seed = seed
        if whiten:
            raise ValueError("whitening does not change reconstructions; leave whiten=False")
        # Empty until fit (or load_state_dict, which resizes them).
        self.register_buffer("mean", torch.empty(0))
        self.register_buffer("components", torch.empty(0, 0))
        self.register_buffer("image_shape", torch.empty(0, dtype=torch.long))

    @property
    def is_fitted(self) -> bool:
        return self.components.numel() > 0

    @torch.no_grad()
    def fit(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> PCABaseline:
        """Fit on normal training images (N, C, H, W); whole images (a mask would not change the components
        that reconstruct them)."""
        if x.ndim != 4:
            raise ValueError(f"fit needs (N, C, H, W) images, got shape {tuple(x.shape)}")
        n = x.shape[0]
        flat = x.detach().reshape(n, -1).cpu().numpy().astype(np.float64)
        k = min(self.n_components, n, flat.shape[1])
        if k < self.n_components:
            warnings.warn(
                f"PCA n_components={self.n_components} exceeds what {n} images of {flat.shape[1]} pixels "
                f"allow; using {k}",
                stacklevel=2,
            )
        from sklearn.decomposition import PCA  # here: loading a model for inference needs no scikit-learn

        pca = PCA(n_components=k, random_state=self.seed).fit(flat)
        dtype = x.dtype if x.is_floating_point() else torch.float32
        self.mean = torch.as_tensor(pca.mean_, dtype=dtype, device=x.device)
        self.components = torch.as_tensor(pca.components_, dtype=dtype, device=x.device)
        self.image_shape = torch.tensor(tuple(x.shape[1:]), dtype=torch.long, device=x.device)
        return self

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_fitted:
            raise RuntimeError("PCABaseline is not fitted; call fit(images) or load_state_dict first")
        expected = tuple(self.image_shape.tolist())
        if tuple(x.shape[1:]) != expected:
            raise ValueError(f"PCA fitted on images of shape {expected}, got {tuple(x.shape[1:])}")
        flat = x.reshape(x.shape[0], -1).to(self.mean.dtype) - self.mean
        codes = flat @ self.components.T
        return (codes @ self.components + self.mean).reshape(x.shape).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(x)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        # Buffers start empty; take the saved shapes so load_state_dict can copy into them.
        for name in ("mean", "components", "image_shape"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
