"""tumblebench.reconstruct: from a tumbling series to a 3D map with unknown poses (SINGLE-style).

Tracking, background removal, ab initio orientation search, projection-matching refinement, Fourier
reconstruction and FSC. Imports only :mod:`simulator` (formats, CTF, orientation convention).
"""
