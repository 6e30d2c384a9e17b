"""Data sets the tasks draw images from, and where they live on disk (`GTMM_DATA`)."""

from gtmm.data.common import ImageDataset, ImageSplit, data_dir
from gtmm.data.mnist import load_mnist, verify_mnist
from gtmm.data.omniglot import load_omniglot, verify_omniglot

__all__ = ["ImageDataset", "ImageSplit", "data_dir", "load_mnist", "load_omniglot", "verify_mnist", "verify_omniglot"]
