"""Training data and parameter sweeps at scale: ``tumblebench dataset`` on a Dask cluster.

* :mod:`tumblebench.dataset.spec` — the TOML spec: a distribution for any parameter, validated on load;
* :mod:`tumblebench.dataset.items` — one item (the function the workers run), written whole or not at all;
* :mod:`tumblebench.dataset.store` — the Zarr view of an item (frames, denoising pairs, truth, labels);
* :mod:`tumblebench.dataset.manifest` — the Parquet manifest, one row per item;
* :mod:`tumblebench.dataset.run` — the client: checks, cluster, progress, resume;
* :mod:`tumblebench.dataset.loader` — :func:`open_dataset` reads a dataset back.
"""

from tumblebench.dataset.loader import Dataset, open_dataset
from tumblebench.dataset.spec import DatasetSpec, load_spec

#: ``tumblebench.dataset.open(DIR)``: the same as :func:`open_dataset`.
open = open_dataset

__all__ = ["Dataset", "DatasetSpec", "load_spec", "open", "open_dataset"]
