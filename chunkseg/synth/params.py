"""Parameters of a synthetic series (imports nothing else of :mod:`chunkseg.synth`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from chunkseg.errors import ParameterError

__all__ = ["SynthParams"]


@dataclass(frozen=True)
class SynthParams:
    """Every parameter of a synthetic series (hashable; stored in the output attrs).

    Lengths are micrometres, axes ``(z, y, x)``; intensities are photons.
    """

    shape: tuple[int, int, int]
    seed: int = 0
    voxel_size: tuple[float, float, float] = (0.4, 0.1, 0.1)
    cell_diameter: float = 4.0
    size_variation: float = 0.15
    psf_sigma: tuple[float, float, float] = (0.45, 0.12, 0.12)
    membrane_photons: float = 500.0
    cell_contrast: float = 0.35
    cytoplasm: float = 0.04
    haze_photons: float = 30.0
    attenuation_length: float = 60.0
    blobs: bool = True
    blob_density: float = 2.0
    background: bool = False
    motion: float = 0.1
    offset: float = 100.0
    gain: float = 1.0
    read_noise: float = 2.0
    noise: bool = True

    def __post_init__(self) -> None:
        try:
            shape = tuple(int(s) for s in self.shape)
        except (TypeError, ValueError):  # not a sequence of numbers (e.g. one int)
            shape = ()
        if len(shape) != 3 or any(s < 1 for s in shape):
            raise ParameterError(f"shape must be 3 positive integers (z, y, x); got {self.shape!r}")
        object.__setattr__(self, "shape", shape)
        for name in ("voxel_size", "psf_sigma"):
            v = tuple(float(x) for x in getattr(self, name))
            if len(v) != 3 or any(not x > 0 for x in v):
                raise ParameterError(f"{name} must be 3 positive numbers (z, y, x); got {v!r}")
            object.__setattr__(self, name, v)
        for name in ("cell_diameter", "attenuation_length", "gain"):
            if not float(getattr(self, name)) > 0:
                raise ParameterError(f"{name} must be > 0; got {getattr(self, name)!r}")
        for name in ("size_variation", "membrane_photons", "cell_contrast", "cytoplasm",
                     "haze_photons", "blob_density", "motion", "offset", "read_noise"):
            if not float(getattr(self, name)) >= 0:
                raise ParameterError(f"{name} must be >= 0; got {getattr(self, name)!r}")
        if int(self.seed) < 0:
            raise ParameterError(f"seed must be a non-negative integer; got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the parameters."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def extent(self) -> np.ndarray:
        """Physical size of the volume in µm ``(z, y, x)``."""
        return np.asarray(self.shape, float) * np.asarray(self.voxel_size)
