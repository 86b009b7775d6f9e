"""Fast tests of the demo scene generator (a small scene, scale 0.15; no TensorFlow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from web_tool.demo import scene as demo_scene

SCALE = 0.15


def read_area(out_dir, area: dict) -> tuple[np.ndarray, np.ndarray]:
    """The whole area as (HxWx4 imagery, HxW labels), mosaicked from its tiles by row/col."""
    size = area["tile_size"]
    rows, cols = area["grid"]
    image = np.zeros((rows * size, cols * size, 4), np.uint8)
    labels = np.full((rows * size, cols * size), 255, np.uint8)
    for t in area["tiles"]:
        window = (
            slice(t["row"] * size, (t["row"] + 1) * size),
            slice(t["col"] * size, (t["col"] + 1) * size),
        )
        with rasterio.open(out_dir / t["imagery"]) as src:
            image[window] = src.read().transpose(1, 2, 0)
        with rasterio.open(out_dir / t["labels"]) as src:
            labels[window] = src.read(1)
    return image, labels


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    info = demo_scene.generate(out, seed=0, scale=SCALE, verbose=False)
    areas = {a["name"]: (a, *read_area(out, a)) for a in info["areas"]}
    return out, info, areas


def test_same_seed_gives_identical_pixels_and_another_seed_differs(small, tmp_path):
    out, info, areas = small
    again = demo_scene.generate(tmp_path / "again", seed=0, scale=SCALE, verbose=False)
    assert again == info
    for area in again["areas"]:
        image, labels = read_area(tmp_path / "again", area)
        np.testing.assert_array_equal(image, areas[area["name"]][1])
        np.testing.assert_array_equal(labels, areas[area["name"]][2])
    other = demo_scene.generate(tmp_path / "other", seed=1, scale=SCALE, verbose=False)
    image, _ = read_area(tmp_path / "other", other["areas"][0])
    assert not np.array_equal(image, areas["a"][1])


def test_scene_json_describes_what_was_written(small):
    out, info, _ = small
    assert json.loads((out / "scene.json").read_text()) == info
    assert info["crs"] == "EPSG:32618" and info["bands"] == ["R", "G", "B", "NIR"]
    assert info["classes"] == ["Water", "Forest", "Field", "Built"]
    names = [t["name"] for a in info["areas"] for t in a["tiles"]]
    expected = [f"a_r{r}_c{c}" for r in range(3) for c in range(3)] + [
        f"b_r{r}_c{c}" for r in range(2) for c in range(2)
    ]
    assert names == expected
    assert info["holdout"] == "a_r2_c2"
    assert sorted(p.name for p in (out / "imagery").iterdir()) == sorted(f"{n}.tif" for n in names)
    assert sorted(p.name for p in (out / "labels").iterdir()) == sorted(f"{n}.tif" for n in names)


def test_tiles_are_georeferenced_tiled_compressed_and_abut(small):
    out, info, _ = small
    for area in info["areas"]:
        size = area["tile_size"]
        left, bottom, right, top = area["bounds"]
        rows, cols = area["grid"]
        assert (right - left, top - bottom) == (cols * size, rows * size)
        bounds = {}
        for t in area["tiles"]:
            for kind, count in (("imagery", 4), ("labels", 1)):
                with rasterio.open(out / t[kind]) as src:
                    assert src.crs.to_epsg() == 32618
                    assert src.count == count and src.dtypes == ("uint8",) * count
                    assert (src.width, src.height) == (size, size)
                    assert src.res == (1.0, 1.0)
                    assert src.nodata is None
                    assert src.profile["tiled"] and src.compression.name.lower() == "deflate"
                    assert tuple(src.bounds) == tuple(t["bounds"])
                    assert (
                        src.transform.c == left + t["col"] * size and src.transform.f == top - t["row"] * size
                    )
            bounds[t["row"], t["col"]] = t["bounds"]
        # neighbours share an edge exactly: no gaps, no overlaps
        for (r, c), (l0, b0, r0, t0) in bounds.items():
            if (r, c + 1) in bounds:
                l1, b1, _, t1 = bounds[r, c + 1]
                assert (l1, b1, t1) == (r0, b0, t0)
            if (r + 1, c) in bounds:
                l1, _, r1, t1 = bounds[r + 1, c]
                assert (l1, r1, t1) == (l0, r0, b0)


def test_full_size_layout_keeps_the_example_request_inside_area_a():
    info = demo_scene.describe(seed=0, scale=1.0)
    a, b = info["areas"]
    assert a["bounds"] == [324200.0, 4307000.0 - 3072, 324200.0 + 3072, 4307000.0]
    assert b["bounds"] == [328000.0, 4307000.0 - 2048, 328000.0 + 2048, 4307000.0]
    assert a["tile_size"] == b["tile_size"] == 1024
    # the seed's example request, in UTM 18N: x 325045..325444, y 4305784..4306163
    left, bottom, right, top = a["bounds"]
    assert left < 325045 and 325444 < right and bottom < 4305784 and 4306163 < top
    corners = {(t["bounds"][2], t["bounds"][1]) for t in a["tiles"]}
    assert (325224.0, 4305976.0) in corners  # the request crosses the corner of 4 tiles


def test_every_class_is_present_in_both_areas(small):
    _, _, areas = small
    for name, (_, _, labels) in areas.items():
        counts = np.bincount(labels.ravel(), minlength=256)
        assert counts[4:].sum() == 0, name
        assert (counts[:4] > 0.005 * labels.size).all(), (name, counts[:4])


@pytest.mark.parametrize("area", ["a", "b"])
def test_spectra_are_plausible(small, area):
    _, _, areas = small
    _, image, labels = areas[area]
    px = image.astype(np.float64)
    water, forest, field, built = (labels == k for k in range(4))
    vegetation = forest | field
    nir = px[..., 3]
    assert nir[forest].mean() > nir[water].mean() + 30
    assert nir[field].mean() > nir[water].mean() + 30
    # water is darkest in NIR
    assert px[water].mean(axis=0).argmin() == 3
    ndvi = (px[..., 3] - px[..., 0]) / (px[..., 3] + px[..., 0] + 1e-6)
    assert ndvi[vegetation].mean() > ndvi[built].mean() + 0.1
    assert ndvi[vegetation].mean() > ndvi[water].mean()
    # built surfaces are greyish: their visible bands are close to each other
    rgb = px[built][:, :3].mean(axis=0)
    assert rgb.max() - rgb.min() < 0.25 * rgb.mean()
    # sensor noise: no two neighbouring pixels of a big uniform area are all equal
    assert (np.diff(px[..., 1], axis=1) != 0).mean() > 0.5


def test_area_b_has_a_shifted_look(small):
    _, _, areas = small
    (_, img_a, lab_a), (_, img_b, lab_b) = areas["a"], areas["b"]
    for k in range(4):  # the same class looks different in b, in some band by a clear margin
        mean_a = img_a[lab_a == k].astype(np.float64).mean(axis=0)
        mean_b = img_b[lab_b == k].astype(np.float64).mean(axis=0)
        assert np.abs(mean_a - mean_b).max() > 12, (k, mean_a, mean_b)
    overall_a = img_a.reshape(-1, 4).mean(axis=0)
    overall_b = img_b.reshape(-1, 4).mean(axis=0)
    assert np.abs(overall_a - overall_b).max() > 15


def test_generate_is_idempotent_unless_forced(small, capsys):
    out, info, _ = small
    path = out / info["areas"][0]["tiles"][0]["imagery"]
    before = path.stat().st_mtime_ns
    assert demo_scene.generate(out, seed=0, scale=SCALE) == info
    assert "already" in capsys.readouterr().out
    assert path.stat().st_mtime_ns == before
    assert not list(out.rglob(".*tmp*")), "temporary files left behind"


def test_cli_help_and_generation(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        demo_scene.main(["--help"])
    assert exc.value.code == 0
    assert "--seed" in capsys.readouterr().out
    assert demo_scene.main(["--out", str(tmp_path), "--scale", "0.06", "--seed", "3"]) == 0
    info = json.loads((tmp_path / "scene.json").read_text())
    assert info["seed"] == 3 and info["areas"][0]["tile_size"] == 64
    assert "written" in capsys.readouterr().out
