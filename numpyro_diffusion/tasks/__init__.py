"""Applications built on the public API: the 2D demo and toy densities, the 8x8 digits
(data, shipped models, constraint experiments) and inpainting.

The core never imports this package; modules here use only public names.
"""
