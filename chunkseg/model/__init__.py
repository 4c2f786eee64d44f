"""Keras 3 3D U-Net, losses/metrics, save/load with metadata, the default model."""
