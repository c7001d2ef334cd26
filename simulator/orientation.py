"""The one projection convention of tumblebench, shared by the simulator and the reconstruction.

Frames
------
* **Particle frame**: atom coordinates in Å relative to the particle's rotation centre (the centre of the
  box of ``truth_map.mrc``). A map of the particle is a volume indexed [z, y, x]; voxel (iz, iy, ix) has its
  centre at map coordinates (x, y, z) = (ix, iy, iz) · sampling, and the rotation centre is voxel
  (n//2, n//2, n//2), i.e. map coordinate ``(n // 2) * sampling`` on every axis.
* **Pose**: a rotation matrix ``A`` (3×3) that takes particle-frame vectors to lab-frame vectors,
  ``r_lab = A @ r_particle``. ``A`` is exactly RELION's matrix for the Euler angles (rot, tilt, psi) of a
  particle (RELION's ``Euler_angles2matrix``); in scipy terms
  ``A = Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).inv().as_matrix()``.
  Projection direction in the particle frame: ``A.T @ [0, 0, 1]``.
* **Lab frame and beam**: the electron beam travels along lab +z; a projection integrates along lab z.
* **Image**: a frame is an array [row, col] = [y, x]. Pixel (row i, col j) has its centre at lab
  (x, y) = ((j − n//2)·p, (i − n//2)·p) relative to the box centre, p the pixel size.
* **Shifts**: as RELION's ``rlnOriginXAngst``/``rlnOriginYAngst``: the particle's rotation centre is imaged
  at the box centre minus the origin, i.e. at lab (x, y) = (−originX, −originY) Å. Shifting the image by
  +origin re-centres the particle.

A test reconstructs the simulator's ``projection``-mode frames with the true poses and recovers the truth
map; any slip in this convention breaks it.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.spatial.transform import Rotation

TWIN = np.diag([-1.0, -1.0, 1.0])  # 180° about the beam (lab z): an image turned by 180° in its plane


def pose_matrix(rot: float | np.ndarray, tilt: float | np.ndarray, psi: float | np.ndarray) -> np.ndarray:
    """RELION Euler angles (degrees) → pose matrices ``A`` (particle → lab).

    Parameters
    ----------
    rot, tilt, psi
        RELION's rlnAngleRot, rlnAngleTilt, rlnAnglePsi in degrees (scalars or arrays of equal length).

    Returns
    -------
    numpy.ndarray
        (3, 3) or (n, 3, 3) rotation matrices.
    """
    angles = np.stack(np.broadcast_arrays(np.asarray(rot, float), np.asarray(tilt, float),
                                          np.asarray(psi, float)), axis=-1)
    return Rotation.from_euler("ZYZ", angles, degrees=True).inv().as_matrix()


def euler_angles(matrices: np.ndarray) -> np.ndarray:
    """Pose matrices ``A`` (particle → lab) → RELION Euler angles (rot, tilt, psi) in degrees.

    Parameters
    ----------
    matrices
        (3, 3) or (n, 3, 3) rotation matrices.

    Returns
    -------
    numpy.ndarray
        (3,) or (n, 3) angles in degrees; tilt in [0, 180].
    """
    return Rotation.from_matrix(np.asarray(matrices, float)).inv().as_euler("ZYZ", degrees=True)


def as_rotation(matrices: np.ndarray) -> Rotation:
    """Pose matrices (particle → lab) as a scipy ``Rotation`` acting on particle-frame vectors."""
    return Rotation.from_matrix(np.asarray(matrices, float))


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees of the rotation ``a @ b.T`` (the angular distance between poses ``a`` and ``b``).

    ``a`` and ``b`` are (3, 3) or (n, 3, 3) arrays of the same length (or one of them single).
    """
    # ||a − b||_F = 2√2·sin(θ/2) and 1 + tr(a bᵀ) = 4·cos²(θ/2): atan2 of the two is accurate at 0° (where
    # arccos of the trace is not) and at 180° (where arcsin of the difference alone is not)
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    sin_half = np.linalg.norm(a - b, axis=(-2, -1)) / (2.0 * np.sqrt(2.0))
    cos_half = np.sqrt(np.clip(1.0 + np.einsum("...ij,...ij->...", a, b), 0.0, None)) / 2.0
    return np.degrees(2.0 * np.arctan2(sin_half, cos_half))


def box_centre(n: int, sampling: float) -> float:
    """Map coordinate (Å) of the rotation centre of an ``n``-voxel box: ``(n // 2) * sampling``."""
    return (n // 2) * sampling


def to_lab(positions: np.ndarray, pose: np.ndarray, origin_xy: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Particle-frame coordinates (Å, relative to the rotation centre) → lab coordinates (Å).

    Lab x, y are relative to the image box centre; the particle centre lands at (−originX, −originY).

    Parameters
    ----------
    positions
        (N, 3) particle-frame coordinates in Å, relative to the rotation centre.
    pose
        (3, 3) pose matrix ``A``.
    origin_xy
        RELION origin (rlnOriginXAngst, rlnOriginYAngst) in Å.
    """
    lab = np.asarray(positions, float) @ np.asarray(pose, float).T
    lab[:, 0] -= origin_xy[0]
    lab[:, 1] -= origin_xy[1]
    return lab


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` pose matrices uniformly distributed on SO(3), drawn from ``rng``."""
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return Rotation.from_quat(q).as_matrix()


def cubic_group() -> np.ndarray:
    """The 24 proper rotations of the cube (point group O) about the coordinate axes, identity first, (24, 3, 3)."""
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            m[np.arange(3), perm] = signs
            if np.linalg.det(m) > 0:
                mats.append(m)
    return np.array(mats)
