"""Data sets the tasks draw images from, and where they live on disk (`GTMM_DATA`)."""

from gtmm.data.common import ImageDataset, ImageSplit, data_dir
from gtmm.data.mnist import download_mnist, load_mnist, verify_mnist
from gtmm.data.omniglot import download_omniglot, load_omniglot, verify_omniglot

__all__ = ["ImageDataset", "ImageSplit", "data_dir", "download_mnist", "download_omniglot", "load_mnist", "load_omniglot",
           "verify_mnist", "verify_omniglot"]
