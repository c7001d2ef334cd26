"""One dataset item, made in this process: its files and its Zarr group agree with each other and with the
truth; failures are recorded and leave nothing behind; the loader reads it back."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import mrcfile
import numpy as np
import pytest

from tumblebench.dataset import open_dataset
from tumblebench.dataset.items import item_paths, make_item
from tumblebench.dataset.manifest import write_manifest
from tumblebench.dataset.run import _init_output
from tumblebench.dataset.spec import draw_parameters, load_spec, parse_spec
from tumblebench.simulator.mobility import MobilitySpec, surface_weight
from tumblebench.simulator.star import read_star

TINY = Path(__file__).parent / "data" / "dataset_tiny.toml"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    spec = load_spec(TINY)
    # one projection-mode item (its noise-free frames show the atoms directly) and the item after it
    first = next(i for i in range(50) if draw_parameters(spec, i)["series.imaging.mode"] == "projection")
    out = tmp_path_factory.mktemp("dataset")
    _init_output(out, spec, TINY.read_text())
    records = [make_item(spec, i, str(out)) for i in (first, first + 1)]
    write_manifest(out, records)
    return spec, out, records


def test_items_are_done_and_complete(made):
    spec, out, records = made
    for rec in records:
        assert rec["status"] == "done", rec.get("error")
        d = out / rec["path"]
        for name in ("particle/truth.extxyz", "particle/manifest.json", "series/frames.mrcs", "series/frames.star",
                     "series/truth_map.mrc", "series/manifest.json", "params.json", "record.json"):
            assert (d / name).is_file(), name
        assert (out / rec["zarr_group"] / "zarr.json").is_file()
    assert not any((out / ".partial").iterdir())
    # the same call again returns the finished item's record without making it again
    again = make_item(spec, records[0]["index"], str(out))
    assert again == json.loads((out / records[0]["path"] / "record.json").read_text())


def test_zarr_frames_are_the_mrc_frames_and_the_star_truth(made):
    _, out, records = made
    ds = open_dataset(out)
    for rec in records:
        z = ds.item(rec["index"])
        with mrcfile.open(out / rec["path"] / "series" / "frames.mrcs", permissive=True) as m:
            frames = np.asarray(m.data)
            sampling = float(m.voxel_size.x)
        np.testing.assert_array_equal(z["frames"], frames)  # the same float32 counts, bit for bit
        _, particles = read_star(out / rec["path"] / "series" / "frames.star")
        n = len(particles)
        assert z["frames"].shape == z["clean_frames"].shape == (n, 96, 96)
        assert n == rec["params"]["series.acquisition.n_frames"]
        # the STAR file holds the same truth (it is written as text: 6 significant digits)
        np.testing.assert_allclose(z["euler_deg"], particles[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]],
                                   atol=1e-3)
        np.testing.assert_allclose(z["defocus_A"], 0.5 * (particles["rlnDefocusU"] + particles["rlnDefocusV"]),
                                   rtol=1e-5, atol=1e-3)
        centre = 96 // 2
        np.testing.assert_allclose(centre + z["shift_A"][:, 0] / sampling, particles["rlnCoordinateX"], atol=1e-3)
        # rotations are proper rotations
        r = z["rotation"]
        np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape), atol=1e-12)
        np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)
        # the projected atoms' centroid is the particle's image position (the rotation centre is the centroid)
        xy = z["atoms/xy_px"].astype(np.float64)
        np.testing.assert_allclose(xy.mean(axis=1), particles[["rlnCoordinateX", "rlnCoordinateY"]], atol=2e-3)


def test_noise_free_frames_are_the_expectation_and_show_the_atoms(made):
    _, out, records = made
    ds = open_dataset(out)
    z = ds.item(records[0]["index"])  # projection mode: intensity 1 + sigma * v_z, atoms bright
    noisy, clean = z["frames"].astype(np.float64), z["clean_frames"].astype(np.float64)
    # Poisson counts: the mean of the noisy frames is the mean of the expectation within a few standard errors
    se = np.sqrt(clean.mean() / noisy.size)
    assert abs(noisy.mean() - clean.mean()) < 5 * se
    # and their pixel variance about it is the Poisson variance (mean), not zero and not the signal's
    resid_var = (noisy - clean).var()
    assert 0.5 * clean.mean() < resid_var < 1.5 * clean.mean()
    # every frame's projected atoms sit on bright pixels (the liquid and graphene add their own structure), and
    # brighter than the same atoms with x and y swapped or mirrored about their centroid (a wrong convention)
    xy = z["atoms/xy_px"].astype(np.float64)
    for f in range(clean.shape[0]):
        x, y = xy[f, :, 0], xy[f, :, 1]

        def mean_at(cols, rows, img=clean[f]):
            return img[np.rint(rows).astype(int) % 96, np.rint(cols).astype(int) % 96].mean()

        on_atoms = mean_at(x, y)
        assert on_atoms > np.percentile(clean[f], 95)
        assert on_atoms > max(mean_at(y, x), mean_at(2 * x.mean() - x, y), mean_at(x, 2 * y.mean() - y))


def test_atom_labels_are_the_truth(made):
    _, out, records = made
    ds = open_dataset(out)
    for rec in records:
        z = ds.item(rec["index"])
        atoms = ase.io.read(out / rec["path"] / "particle" / "truth.extxyz")
        np.testing.assert_array_equal(z["atoms/cn"], atoms.arrays["cn"])
        np.testing.assert_array_equal(z["atoms/surface"], atoms.arrays["surface"])
        np.testing.assert_array_equal(z["atoms/grain"], atoms.arrays["grain"])
        mob = MobilitySpec(penetration_depth_A=rec["params"]["particle.mobility.penetration_depth_A"])
        np.testing.assert_array_equal(z["atoms/mobile"], surface_weight(atoms.arrays["depth"], mob) > 0.5)
        assert z["atoms/present"].all()  # dissolution is off


def test_loader_returns_manifest_and_dask_frames(made):
    _, out, records = made
    ds = open_dataset(out)
    assert len(ds) == 2
    m = ds.manifest
    assert list(m["index"]) == [r["index"] for r in records]
    assert set(m["status"]) == {"done"}
    assert "series.acquisition.dose_per_frame_e_per_A2" in m.columns
    frames = ds.frames("clean_frames")
    assert frames.shape[0] == sum(r["n_frames"] for r in records) == len(ds.frame_index)
    k = frames.shape[0] - 1
    np.testing.assert_array_equal(np.asarray(frames[k]), ds.read_frame(k, "clean_frames"))


def test_a_failing_item_is_recorded_and_leaves_nothing(tmp_path):
    # a 55-atom particle does not fit the 40-px box: unphysical only jointly, so it fails at simulate
    spec = parse_spec({"particle": {"shape": {"kind": "cuboctahedron", "n_atoms": 55}},
                       "series": {"acquisition": {"n_frames": 2, "field_px": 96, "box_size_px": 40},
                                  "imaging": {"mode": "projection"}, "output": {"montage": False}}})
    _init_output(tmp_path, spec, None)
    p = item_paths(tmp_path, 3)
    # leftovers of an earlier attempt killed mid-item, and a Zarr group whose item directory never arrived
    (p["partial"] / "item_000003-1-dead").mkdir()
    rec = make_item(spec, 3, str(tmp_path))
    assert rec["status"] == "failed"
    assert "box_size_px" in rec["error"]
    assert json.loads(p["failed"].read_text())["error"] == rec["error"]
    assert not p["dir"].exists() and not p["zarr"].exists()
    assert not any(p["partial"].iterdir())
    assert make_item(spec, 3, str(tmp_path))["error"] == rec["error"]  # not made again


@pytest.mark.slow  # a 60-frame reconstruction, atom model and scorecard (a few minutes on 2 cores)
def test_an_item_that_reconstructs_holds_the_map_and_its_atom_labels(tmp_path):
    spec = parse_spec({"dataset": {"steps": ["build", "simulate", "reconstruct", "atoms", "score"]},
                       "particle": {"shape": {"kind": "cuboctahedron", "n_atoms": 55},
                                    "mobility": {"penetration_depth_A": 2.0}},
                       "series": {"acquisition": {"n_frames": 60, "field_px": 128, "box_size_px": 64},
                                  "imaging": {"mode": "projection"}, "output": {"montage": False}},
                       "reconstruct": {"poses": "truth", "box": 64}})
    _init_output(tmp_path, spec, None)
    rec = make_item(spec, 0, str(tmp_path))
    assert rec["status"] == "done", rec.get("error")
    assert rec["poses.median_error_deg"] < 1e-6  # true poses, scored against themselves
    assert rec["map.fsc_truth_0.5_A"] is not None
    for name in ("recon/map.mrc", "atoms", "scorecard.json"):
        assert (tmp_path / rec["path"] / name).exists()
    z = open_dataset(tmp_path).item(0)
    labels, vol = z["atom_labels"], z["map"]
    assert labels.shape == vol.shape == (64, 64, 64)
    assert set(np.unique(labels)) == set(range(56))  # every one of the 55 atoms labels its voxels
    # the labels are in the map's frame (true poses): the density sits on them
    assert vol[labels > 0].mean() > 5 * vol[labels == 0].mean()
