"""Generative temporal models with memory (Gemici et al., 2017) in JAX."""

__version__ = "0.1.0"
