"""Synthetic lattice light-sheet membrane volumes with exact truth (pure NumPy/SciPy).

:mod:`chunkseg.synth.params` holds the parameters (it imports nothing else of this
package), :mod:`chunkseg.synth.render` the rendering kernel and
:mod:`chunkseg.synth.volume` the block and volume generators (the model is described
there).
"""

from chunkseg.synth.params import SynthParams
from chunkseg.synth.volume import MASK_HALO, SynthVolume, synth_block, synth_volume

__all__ = ["MASK_HALO", "SynthParams", "SynthVolume", "synth_block", "synth_volume"]
