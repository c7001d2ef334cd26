"""Test-suite settings: hypothesis draws its examples deterministically (``derandomize``), so that a CI run is
reproducible and a failure seen once is seen every time; set ``HYPOTHESIS_PROFILE=explore`` to search with
fresh random examples (failures found that way become ``@example`` cases)."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
