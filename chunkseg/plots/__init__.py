"""Figures (PNG) written by chunkseg commands; one module per figure family.

matplotlib is imported lazily inside each plotting function, with the Agg backend,
so importing chunkseg never needs a display or matplotlib itself.  ``viewer`` renders
stores in napari (the optional extra ``viewer``; it needs a display).
"""
