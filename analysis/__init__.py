"""tumblebench.analysis: unsupervised atom model building and per-atom statistics.

Follows the methods of Wietfeldt et al., "Small, solubilized platinum nanocrystals consist of an ordered
core surrounded by mobile surface atoms", Communications Chemistry 7 (2024). Imports only :mod:`simulator`.
"""
