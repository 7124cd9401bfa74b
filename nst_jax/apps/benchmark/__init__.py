"""The benchmark (``bench``, its ``cases`` behind a registry), its baselines (PyTorch,
neural-style-pt), and the sweep and optimiser comparisons."""
