"""The rasters GIS users have: any pixel type scaled right, any band layout, masks, black borders,
VRTs, files that break later. Tiny generated rasters, real reads."""

import json

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

from tests.conftest import UTM18, four_tiles, make_geotiff
from web_tool.DataLoader import DataLoader
from web_tool.errors import ConfigError, NoImageryError
from web_tool.geometry import Extent, Grid
from web_tool.imagery.datasets import DatasetConfig
from web_tool.imagery.stretch import band_percentiles

BOUNDS = (500_000, 4_300_000, 500_064, 4_300_064)
GRID = Grid.covering(Extent(*BOUNDS, crs=UTM18), 1.0)


def scene8() -> np.ndarray:
    """4 x 64 x 64 uint8 where every band spans 0..255 (so min/max scaling maps it onto itself)."""
    ramp = np.linspace(0, 255, 64 * 64).reshape(64, 64)
    return np.stack([np.roll(ramp, 9 * b, axis=1) for b in range(4)]).round().astype(np.uint8)


def loader_for(paths, n_bands=None, **config) -> DataLoader:
    return DataLoader(DatasetConfig(name="t", paths=[str(p) for p in paths], **config), n_bands=n_bands)


def write(tmp_path, name, data, **kwargs):
    size = (data.shape[2], data.shape[1])
    return make_geotiff(tmp_path / name, BOUNDS, size=size, data=data, dtype=str(data.dtype), **kwargs)


def set_colorinterp(path, *names):
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = [ColorInterp[n] for n in names]


# --- pixel types -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, to_raw",
    [
        ("uint16", lambda v: v * 40),  # Sentinel-2-like reflectance, 0..10200
        ("int16", lambda v: v * 100 - 12_000),
        ("float32", lambda v: v / 255),  # reflectance 0..1
    ],
)
def test_deeper_pixel_types_feed_the_model_what_8_bit_would(tmp_path, dtype, to_raw):
    data8 = scene8()
    raw = to_raw(data8.astype(np.float64)).astype(dtype)
    expected = loader_for([write(tmp_path, "u8.tif", data8)]).read(GRID).data
    patch = loader_for([write(tmp_path, f"{dtype}.tif", raw)]).read(GRID)
    assert patch.data.dtype == np.uint8 and patch.valid.all()
    assert np.abs(patch.data.astype(int) - expected).max() <= 1  # no wrap-around, no black image


def test_the_files_own_statistics_set_the_scaling(tmp_path):
    raw = (scene8().astype(np.uint16) * 10) + 1000  # 1000..3550
    path = write(tmp_path, "s2.tif", raw)
    with rasterio.open(path, "r+") as dst:
        for b in range(1, 5):
            dst.update_tags(b, STATISTICS_MINIMUM=0, STATISTICS_MAXIMUM=5100)
    loader = loader_for([path])
    assert "own statistics" in loader.scaling.source
    expected = np.clip(np.moveaxis(raw, 0, -1) / 5100 * 255 + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(loader.read(GRID).data, expected)


def test_scale_in_the_config_overrides_the_statistics(tmp_path):
    raw = scene8().astype(np.uint16) * 40
    path = write(tmp_path, "s.tif", raw)
    fixed = loader_for([path], scale={"min": [0], "max": [2550]}).read(GRID).data
    expected = np.clip(np.moveaxis(raw, 0, -1) / 2550 * 255 + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(fixed, expected)
    cut = loader_for([path], scale={"percentiles": [2, 98]})
    low, high = np.percentile(raw.reshape(4, -1), [2, 98], axis=1)
    np.testing.assert_allclose(cut.scaling.model.low, low, rtol=0.02)
    np.testing.assert_allclose(cut.scaling.model.high, high, rtol=0.02)


def test_a_scale_with_the_wrong_number_of_bands_is_a_config_error(tmp_path):
    path = write(tmp_path, "s.tif", scene8().astype(np.uint16))
    with pytest.raises(ConfigError, match="scale.min has 3 values but the dataset feeds 4 bands"):
        loader_for([path], scale={"min": [0, 0, 0], "max": [1]})


def test_deep_imagery_is_shown_with_a_2_98_percent_cut_and_8_bit_as_it_is(tmp_path):
    rng = np.random.default_rng(0)
    raw = rng.gamma(2.0, 600, (4, 64, 64)).astype(np.uint16)
    patch = loader_for([write(tmp_path, "g.tif", raw)]).read(GRID)
    low, high = np.percentile(raw[:3].reshape(3, -1), [2, 98], axis=1)
    expected = np.clip((np.moveaxis(raw[:3], 0, -1) - low) / (high - low) * 255 + 0.5, 0, 255)
    assert np.abs(patch.display.astype(int) - expected.astype(np.uint8)).mean() < 2
    assert (patch.display == 0).mean() == pytest.approx(0.02, abs=0.01)  # 2 % of pixels at black
    data8 = scene8()
    patch8 = loader_for([write(tmp_path, "u8.tif", data8)]).read(GRID)
    np.testing.assert_array_equal(patch8.display, np.moveaxis(data8[:3], 0, -1))


def test_statistics_are_computed_once_and_kept_in_the_cache(tmp_path):
    path = write(tmp_path, "s.tif", scene8().astype(np.uint16) * 4)
    config = DatasetConfig(name="t", paths=[str(path)])
    DataLoader(config, cache_dir=tmp_path / "cache")
    (cached,) = (tmp_path / "cache").glob("stats-*.json")
    stored = json.loads(cached.read_text())
    stored["percentiles"] = [[100.0] * 100 + [300.0] * 101] * 4  # a change only the cache knows
    cached.write_text(json.dumps(stored))
    again = DataLoader(config, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.scaling.model.low, [100] * 4)
    np.testing.assert_array_equal(again.scaling.model.high, [300] * 4)


def test_statistics_of_a_large_file_without_overviews_read_a_bounded_sample(tmp_path):
    data = np.random.default_rng(1).integers(0, 4000, (1, 2600, 2600)).astype(np.uint16)
    path = make_geotiff(
        tmp_path / "big.tif",
        (500_000, 4_300_000, 502_600, 4_302_600),
        size=(2600, 2600),
        bands=1,
        dtype="uint16",
        data=data,
    )
    (f,) = loader_for([path]).files
    assert f.needs_overviews
    p = band_percentiles([f], [1], None, None)
    assert p.shape == (1, 201) and 0 <= p[0, 0] < 50 and 3950 < p[0, -1] <= 4000


# --- band layouts ----------------------------------------------------------------------------


def rgb_file(tmp_path, name="rgb.tif", bands=3):
    return write(tmp_path, name, scene8()[:bands])


def test_an_rgb_orthophoto_is_refused_for_a_4_band_model_naming_the_band_and_the_fix(tmp_path):
    path = rgb_file(tmp_path)
    with pytest.raises(ConfigError) as info:
        loader_for([path], n_bands=4)
    message = str(info.value)
    assert "nothing feeds the model's NIR (input 4)" in message and str(path) in message
    assert '"bands": [1, 2, 3, 1]' in message and "--model features" in message


def test_an_rgb_orthophoto_serves_a_3_band_model_and_any_band_model(tmp_path):
    path = rgb_file(tmp_path)
    assert loader_for([path], n_bands=3).bands == [1, 2, 3]
    patch = loader_for([path], n_bands=None).read(GRID)
    assert patch.data.shape[-1] == 3


def test_configured_bands_must_be_one_per_model_input(tmp_path):
    with pytest.raises(ConfigError, match=r'"bands" lists 3 bands \[1, 2, 3\] but the model takes 4.*NIR'):
        loader_for(four_tiles(tmp_path), n_bands=4, bands=[1, 2, 3])


def test_bands_beyond_the_file_name_the_file_and_its_bands(tmp_path):
    with pytest.raises(ConfigError, match=r"asks for band 5 but .*t_00.tif has 4 bands \(1 red"):
        loader_for(four_tiles(tmp_path), bands=[2, 3, 4, 5])


def test_rgba_alpha_is_a_mask_never_model_input(tmp_path):
    data = np.concatenate([scene8()[:3], np.full((1, 64, 64), 255, np.uint8)])
    data[3, :, :20] = 0  # transparent left part
    path = write(tmp_path, "rgba.tif", data)
    set_colorinterp(path, "red", "green", "blue", "alpha")
    loader = loader_for([path], n_bands=3)
    assert loader.bands == [1, 2, 3]
    patch = loader.read(GRID)
    assert not patch.valid[:, :19].any() and patch.valid[:, 21:].all()
    with pytest.raises(ConfigError, match="band 4 is alpha, a mask"):
        loader_for([path], n_bands=4)
    with pytest.raises(ConfigError, match="its alpha band"):
        loader_for([path], bands=[1, 2, 4])


def test_rgbn_plus_alpha_feeds_rgbn_and_masks_by_the_alpha(tmp_path):
    data = np.concatenate([scene8(), np.full((1, 64, 64), 255, np.uint8)])
    data[4, 40:] = 0
    path = write(tmp_path, "rgbna.tif", data)
    set_colorinterp(path, "red", "green", "blue", "undefined", "alpha")
    loader = loader_for([path], n_bands=4)
    assert loader.bands == [1, 2, 3, 4]
    patch = loader.read(GRID)
    assert not patch.valid[41:].any() and patch.valid[:39].all()
    np.testing.assert_array_equal(patch.data[:39], np.moveaxis(data[:4, :39], 0, -1))


def test_a_nir_band_that_gdal_tagged_alpha_is_read_as_nir(tmp_path):
    data = scene8()  # GDAL tags the 4th band of a 4-band 8-bit GeoTIFF as alpha by default
    path = write(tmp_path, "rgbn.tif", data)
    with rasterio.open(path) as src:
        assert src.colorinterp[3] == ColorInterp.alpha
    patch = loader_for([path], n_bands=4).read(GRID)
    assert patch.valid.all()  # its zeros are dark NIR, not holes
    np.testing.assert_array_equal(patch.data, np.moveaxis(data, 0, -1))


def test_bands_labelled_by_colour_are_fed_in_model_order(tmp_path):
    path = rgb_file(tmp_path, "bgr.tif")
    set_colorinterp(path, "blue", "green", "red")
    assert loader_for([path], n_bands=3).bands == [3, 2, 1]


# --- masks and borders -----------------------------------------------------------------------


def test_black_borders_without_nodata_are_not_mapped(tmp_path):
    data = scene8()
    data[:, data.min(axis=0) == 0] = 1  # no accidental all-black pixel inside
    data[:, :, :10] = 0  # a black border, declared nowhere
    path = write(tmp_path, "border.tif", data)
    patch = loader_for([path], n_bands=4).read(GRID)
    assert not patch.valid[:, :9].any() and patch.valid[:, 11:].all()


def test_a_nodata_value_the_files_do_not_declare_can_be_configured(tmp_path):
    raw = scene8().astype(np.int16) * 10
    raw[:, :16] = -9999
    path = write(tmp_path, "nd.tif", raw)
    loader = loader_for([path], nodata=-9999)
    patch = loader.read(GRID)
    assert not patch.valid[:15].any() and patch.valid[17:].all()
    assert loader.scaling.model.low.min() >= 0  # -9999 kept out of the statistics


def test_a_configured_resolution_serves_the_imagery_at_it(tmp_path):
    """1 m imagery served at 2 m (a model trained at 2 m): grids, reads and /datasets follow."""
    path = write(tmp_path, "one_m.tif", scene8())
    native, coarse = loader_for([path]), loader_for([path], resolution=2.0)
    assert native.resolution_m == pytest.approx(1.0) and coarse.resolution_m == 2.0
    assert coarse.describe()["resolution"] == 2.0
    extent = Extent(*BOUNDS, crs=UTM18)
    fine, half = native.grid_for(extent), coarse.grid_for(extent)
    assert abs(half.width - fine.width / 2) <= 1 and abs(half.height - fine.height / 2) <= 1
    patch = coarse.read(half)
    assert patch.data.shape[:2] == (half.height, half.width) and patch.valid[2:-2, 2:-2].all()
    # corrections and exports (the files' CRS) are at 2 m too
    assert coarse.native_grid(extent).transform.a == 2.0 and coarse.native_grid(extent).width == 32
    assert native.native_grid(extent).transform.a == 1.0
    # each coarse pixel holds the mean of the 2 x 2 fine pixels under it, not one of them
    sharp, soft = native.read(fine).data[..., 0].astype(float), patch.data[..., 0].astype(float)
    h, w = soft.shape
    blocks = sharp[: 2 * h, : 2 * w].reshape(h, 2, w, 2).mean(axis=(1, 3))
    inside = (slice(2, -2), slice(2, -2))
    assert np.abs(blocks - soft)[inside].mean() < 0.5 < np.abs(sharp[::2, ::2][:h, :w] - soft)[inside].mean()


def test_a_resolution_far_finer_than_the_files_is_refused_at_start_up(tmp_path):
    path = write(tmp_path, "one_m.tif", scene8())
    assert loader_for([path], resolution=0.25).resolution_m == 0.25  # 4x finer: a model's choice
    with pytest.raises(ConfigError, match=r"resolution 0.05 m is more than 4x finer .* 400; give 0.25 m"):
        loader_for([path], resolution=0.05)


def test_an_internal_mask_is_respected(tmp_path):
    path = write(tmp_path, "m.tif", scene8())
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "r+") as dst:
        mask = np.full((64, 64), 255, np.uint8)
        mask[:, 32:] = 0
        dst.write_mask(mask)
    patch = loader_for([path]).read(GRID)
    assert patch.valid[:, :31].all() and not patch.valid[:, 33:].any()


# --- VRTs and files that break ---------------------------------------------------------------


def vrt_of(sources, path):
    import rasterio.shutil

    rasterio.shutil.copy(sources, path, driver="VRT")
    return path


def test_a_vrt_with_a_missing_source_is_skipped_naming_the_source(tmp_path, caplog):
    tiles = four_tiles(tmp_path / "tiles")
    vrt = vrt_of(tiles[0], tmp_path / "one.vrt")
    good = vrt_of(tiles[1], tmp_path / "two.vrt")
    tiles[0].unlink()
    loader = loader_for([vrt, good])
    assert [f.path for f in loader.files] == [str(good)]
    assert f"{tiles[0]} do not exist" in caplog.text and "one.vrt" in caplog.text


def test_a_file_that_disappears_after_start_up_is_left_out_not_a_500(tmp_path, caplog):
    paths = four_tiles(tmp_path)
    loader = loader_for(paths)
    paths[0].write_bytes(b"overwritten by a failed copy")
    grid = Grid.covering(Extent(500_000, 4_300_064, 500_064, 4_300_128, crs=UTM18), 1.0)  # t_00 only
    with pytest.raises(NoImageryError):
        loader.read(grid)
    assert "t_00.tif" in caplog.text and "cannot be read any more" in caplog.text
    both = Grid.covering(Extent(500_032, 4_300_032, 500_096, 4_300_096, crs=UTM18), 1.0)
    assert loader.read(both).valid.mean() == pytest.approx(0.75, abs=0.05)


def test_class_0_in_label_rasters_is_a_class_not_a_black_border(tmp_path):
    labels = np.zeros((1, 64, 64), np.uint8)  # all Water, corners included
    labels[0, 20:40] = 2
    image, label = write(tmp_path, "img.tif", scene8()), write(tmp_path, "lbl.tif", labels)
    loader = DataLoader(DatasetConfig(name="t", paths=[str(image)], label_paths=[str(label)]))
    patch = loader.read(GRID, labels=True)
    assert patch.valid.all() and (patch.data[..., 0] == 0).mean() > 0.6
