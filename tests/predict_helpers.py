"""A random-weights U-Net whose output really varies (shared by the predict tests).

Plain random initialisation gives p = 0.5 +- 0.003 (or exactly 0.5 where ReLUs die), so
a seam would hide below any tolerance.  Random BatchNorm offsets keep units alive and a
rescaled 1x1x1 head spreads the logits to std ~1.5 on smooth input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def random_model(path: Path, *, depth: int = 2, base_filters: int = 3, seed: int = 0) -> Path:
    """Save a chunkseg model with random weights and a varied output; return its path."""
    import keras
    import scipy.ndimage as ndi

    from chunkseg.model import UNetConfig, build_unet, save_model

    keras.utils.set_random_seed(seed)
    cfg = UNetConfig(depth=depth, base_filters=base_filters)
    net = build_unet(cfg)
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma, rng.normal(0, 0.5, beta.shape).astype(np.float32),
                               mean, var])
    x = ndi.gaussian_filter(rng.random((40, 40, 40)), 1.5)
    x = ((x - x.min()) / (x.max() - x.min())).astype(np.float32)[None, ..., None]
    p = np.clip(keras.ops.convert_to_numpy(net(x))[0, 10:-10, 10:-10, 10:-10, 0], 1e-6, 1 - 1e-6)
    logit = np.log(p / (1 - p))
    head = net.get_layer("membrane")
    w, b = head.get_weights()
    k = 1.5 / max(float(logit.std()), 1e-9)
    head.set_weights([w * k, (b - logit.mean()) * k])
    return save_model(net, path, metadata={"config": cfg.to_dict()})
