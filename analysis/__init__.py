"""tumblebench.analysis: unsupervised atom model building and per-atom statistics.

Follows the methods of Wietfeldt et al., "Small, solubilized platinum nanocrystals consist of an ordered
core surrounded by mobile surface atoms", Communications Chemistry 7 (2024). Imports only :mod:`simulator`.
"""

from tumblebench.analysis.config import AtomsConfig
from tumblebench.analysis.io import read_atoms, write_atom_model
from tumblebench.analysis.model import AtomModel, build_atom_model

__all__ = ["AtomModel", "AtomsConfig", "build_atom_model", "read_atoms", "write_atom_model"]
