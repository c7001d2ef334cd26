"""Example stage algorithms for tumblebench (see docs/architecture.md, "Adding an algorithm").

* :class:`~tumblebench_example_plugins.poses.RandomPoses` (``pose.random``): uniformly random rotations, the floor
  every pose estimator must beat.
* :class:`~tumblebench_example_plugins.atoms.PeakLocalMaxDetector` (``atoms.peak-local-max``): the local maxima of
  the map above a noise threshold (``skimage.feature.peak_local_max``).
"""
