"""`tiler train`: a real (tiny) training that must learn, the model file contract, determinism,
one-line errors for bad annotations, and the install hint without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from conftest import UTM, write_geotiff

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from tiler.accuracy import combine_scores, match_points  # noqa: E402
from tiler.cli import main  # noqa: E402
from tiler.kernels.peaks import find_peaks  # noqa: E402
from tiler.train.export import KEYS  # noqa: E402
from tiler.train.net import NetConfig, UNet, n_params, receptive_field, shift_period  # noqa: E402

PIXEL_M = 0.5
SIDE = 64
# A tiny net for the tests: depth 2, width 8, stem 2 (shift period 4).
TINY = ["--depth", "2", "--width", "8", "--patch", "64", "--batch", "4", "--threads", "2"]
MATCH = ["--within", "2m", "--min-distance", "1.5m", "--sigma", "2px"]


def transform(index: int) -> Affine:
    return Affine(PIXEL_M, 0.0, 400000.0 + 1000 * index, 0.0, -PIXEL_M, 3700000.0)


def blobs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A 3-band uint8 image of Gaussian blobs on noise, and the (row, col) centres of the
    objects: blobs bright in band 3. As many decoys, as bright in bands 1 and 2 but dark in
    band 3, make brightness alone useless (an untrained net finds nothing)."""
    centres: list[np.ndarray] = []
    while len(centres) < 2 * n:
        c = rng.uniform(4, SIDE - 5, 2)
        if all(np.hypot(*(c - o)) >= 9 for o in centres):
            centres.append(c)
    rr, cc = np.mgrid[:SIDE, :SIDE]
    image = rng.normal(70, 18, (3, SIDE, SIDE))
    for k, (r, c) in enumerate(centres):
        blob = np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * 2.0**2))
        colour = [60, 60, 120] if k < n else [120, 120, -40]
        image += np.array(colour)[:, None, None] * blob[None]
    return np.clip(image, 0, 255).astype(np.uint8), np.array(centres[:n])


def make_data(folder: Path, n_images: int, seed: int = 0) -> dict[str, np.ndarray]:
    """GeoTIFFs in folder/images, truth in folder/truth: map CSV for even images, GeoJSON
    points for odd ones. Returns the centres (row, col) by stem."""
    import geopandas as gpd
    from shapely.geometry import Point

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "truth").mkdir()
    centres = {}
    for i in range(n_images):
        stem = f"tile_{i:02d}"
        image, rc = blobs(rng, int(rng.integers(3, 8)))
        t = transform(i)
        write_geotiff(folder / "images" / f"{stem}.tif", image, transform=t)
        x, y = t * (rc[:, 1] + 0.5, rc[:, 0] + 0.5)
        if i % 2 == 0:
            lines = ["x,y", *(f"{a:.4f},{b:.4f}" for a, b in zip(x, y, strict=True))]
            (folder / "truth" / f"{stem}.csv").write_text("\n".join(lines) + "\n")
        else:
            points = [Point(a, b) for a, b in zip(x, y, strict=True)]
            points = gpd.GeoDataFrame(geometry=points, crs=UTM)
            points.to_file(folder / "truth" / f"{stem}.geojson", driver="GeoJSON")
        centres[stem] = rc
    return centres


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real training run through the command line (about a minute on 2 cores)."""
    folder = tmp_path_factory.mktemp("train")
    centres = make_data(folder, 16)
    (folder / "val.txt").write_text("tile_13\ntile_14\ntile_15\n")
    out = folder / "model" / "blobs.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "tiler.cli", "train", str(out), "--images", str(folder / "images"),
         "--truth", str(folder / "truth"), "--val-list", str(folder / "val.txt"),
         "--epochs", "40", "--patience", "15", "--seed", "0", "--name", "blobs",
         "--licence", "CC0", *TINY, *MATCH],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return folder, out, centres, proc


def onnx_f1(out: Path, folder: Path, centres: dict, stems: list[str]) -> float:
    """F1 of the model file decoded as the contract says (normalise, threshold, peaks)."""
    import rasterio

    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    norm = json.loads(meta["tiler:normalise"])
    mean = np.array(norm["mean"], np.float32)[:, None, None]
    std = np.array(norm["std"], np.float32)[:, None, None]
    radius = round(float(meta["tiler:min_distance_m"]) / PIXEL_M)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    scores = []
    for stem in stems:
        with rasterio.open(folder / "images" / f"{stem}.tif") as ds:
            x = ((ds.read() * norm["scale"] - mean) / std).astype(np.float32)[None]
        conf = session.run(None, {session.get_inputs()[0].name: x})[0][0, 0]
        peaks = find_peaks(conf, float(meta["tiler:threshold"]), radius)
        scores.append(match_points(peaks * PIXEL_M, centres[stem] * PIXEL_M, 2.0).score())
    return combine_scores(scores).f1


def test_training_learns_the_blobs_and_writes_the_contract(trained):
    folder, out, centres, proc = trained
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert set(KEYS) <= set(meta)
    assert meta["tiler:format"] == "1" and meta["tiler:output"] == "points"
    assert json.loads(meta["tiler:bands"]) == ["red", "green", "blue"]  # GDAL: 3-band RGB
    norm = json.loads(meta["tiler:normalise"])
    assert norm["scale"] == pytest.approx(1 / 255) and len(norm["mean"]) == len(norm["std"]) == 3
    assert float(meta["tiler:pixel_size_m"]) == pytest.approx(PIXEL_M)
    assert int(meta["tiler:receptive_field_px"]) == receptive_field(NetConfig(2, 8, 2, 3))
    assert meta["tiler:shift_period_px"] == "4" and meta["tiler:min_distance_m"] == "1.5"
    assert meta["tiler:name"] == "blobs"
    card = out.with_suffix(".md").read_text()
    assert meta["tiler:card"] == card
    assert "CC0" in card and "--seed 0" in card and "| threshold |" in card
    # Validation chose the threshold; decoded as the contract says, the file finds the blobs.
    val = ["tile_13", "tile_14", "tile_15"]
    assert onnx_f1(out, folder, centres, val) >= 0.85
    assert "F1" in proc.stdout


def test_an_untrained_net_does_not_find_the_blobs(trained, tmp_path):
    folder, out, centres, _ = trained
    torch.manual_seed(0)
    untrained = tmp_path / "untrained.onnx"
    from tiler.train.export import export_onnx, set_metadata

    export_onnx(UNet(NetConfig(2, 8, 2, 3)).eval(), untrained)
    set_metadata(untrained, {p.key: p.value for p in onnx.load(str(out)).metadata_props})
    assert onnx_f1(untrained, folder, centres, ["tile_13", "tile_14", "tile_15"]) < 0.5


def test_onnx_takes_any_batch_and_size():
    from tiler.train.export import export_onnx

    torch.manual_seed(0)
    net = UNet(NetConfig()).eval()
    assert (n_params(net), receptive_field(net.config), shift_period(net.config)) == (
        121_073,
        103,
        8,
    )
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"tiler-test-{os.getpid()}.onnx"
    try:
        assert export_onnx(net, path) < 1e-4
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((3, 4, 40, 56)).astype(np.float32)
        y = session.run(None, {"image": x})[0]
        assert y.shape == (3, 1, 40, 56) and y.dtype == np.float32
        assert 0 <= y.min() and y.max() <= 1
    finally:
        path.unlink(missing_ok=True)


def weights(path: Path) -> list[np.ndarray]:
    from onnx import numpy_helper

    return [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer]


def test_same_seed_same_weights(tmp_path, capsys):
    make_data(tmp_path, 4)
    common = ["--images", str(tmp_path / "images"), "--truth", str(tmp_path / "truth")]
    common += ["--val-fraction", "0.25", "--epochs", "2", *TINY, *MATCH, "-q"]
    runs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert main(["train", str(tmp_path / f"{name}.onnx"), *common, "--seed", seed]) == 0
        runs[name] = weights(tmp_path / f"{name}.onnx")
    assert all(np.array_equal(a, b) for a, b in zip(runs["a"], runs["b"], strict=True))
    assert not all(np.array_equal(a, c) for a, c in zip(runs["a"], runs["c"], strict=True))


def one_error(capsys, argv: list[str], *names: str) -> str:
    assert main(argv) != 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("tiler: error:"), err
    for name in names:
        assert name in err[0], err[0]
    return err[0]


@pytest.fixture
def small(tmp_path):
    make_data(tmp_path, 3)
    base = ["train", str(tmp_path / "m.onnx"), "--images", str(tmp_path / "images")]
    return tmp_path, base + ["--truth", str(tmp_path / "truth"), "--epochs", "1", *TINY]


def test_points_outside_the_image(small, capsys):
    folder, argv = small
    (folder / "truth" / "tile_00.csv").write_text("x,y\n10.0,20.0\n")
    line = one_error(capsys, argv, "tile_00.csv")
    assert "outside the image" in line


def test_wrong_crs(small, capsys):
    import geopandas as gpd
    from shapely.geometry import Point

    folder, argv = small
    # UTM numbers labelled as EPSG:3857: reprojected, they land far from the image.
    wrong = gpd.GeoDataFrame(geometry=[Point(400010.0, 3699990.0)], crs="EPSG:3857")
    wrong.to_file(folder / "truth" / "tile_01.geojson", driver="GeoJSON")
    one_error(capsys, argv, "tile_01.geojson", "CRS")


def test_no_annotations_anywhere(small, capsys):
    folder, argv = small
    for path in (folder / "truth").iterdir():
        path.unlink()
        (folder / "truth" / f"{path.stem}.csv").write_text("x,y\n")
    one_error(capsys, argv, "no annotations")


def test_missing_truth_file(small, capsys):
    folder, argv = small
    (folder / "truth" / "tile_02.csv").unlink()
    one_error(capsys, argv, "tile_02.tif", "--missing-truth empty")
    assert main([*argv, "--missing-truth", "empty", "-q"]) == 0


def test_pixel_sizes_disagree(small, capsys):
    folder, argv = small
    image, _ = blobs(np.random.default_rng(1), 3)
    coarse = Affine(0.6, 0.0, 400000.0, 0.0, -0.6, 3700000.0)
    write_geotiff(folder / "images" / "tile_00.tif", image, transform=coarse)
    one_error(capsys, argv, "pixel size", "within 1 %")


def test_value_types_disagree(small, capsys):
    folder, argv = small
    image, _ = blobs(np.random.default_rng(1), 3)
    write_geotiff(
        folder / "images" / "tile_01.tif", image.astype(np.uint16), transform=transform(1)
    )
    one_error(capsys, argv, "tile_01.tif", "uint16")


def test_mask_training(tmp_path, capsys):
    """Polygons as masks: a mask model without min distance."""
    import geopandas as gpd
    from shapely.geometry import Point

    centres = make_data(tmp_path, 3)
    for i, (stem, rc) in enumerate(centres.items()):
        t = transform(i)
        x, y = t * (rc[:, 1] + 0.5, rc[:, 0] + 0.5)
        discs = [Point(a, b).buffer(2.0) for a, b in zip(x, y, strict=True)]
        for old in (tmp_path / "truth").glob(f"{stem}.*"):
            old.unlink()
        gpd.GeoDataFrame(geometry=discs, crs=UTM).to_file(tmp_path / "truth" / f"{stem}.gpkg")
    out = tmp_path / "mask.onnx"
    argv = ["train", str(out), "--images", str(tmp_path / "images"), "--truth"]
    argv += [str(tmp_path / "truth"), "--kind", "mask", "--epochs", "2", *TINY, "-q"]
    assert main([*argv, "--band-names", "red,nir"]) == 2  # 2 names for 3 bands
    assert "--band-names: 2 name(s) for 3 band(s)" in capsys.readouterr().err
    assert main([*argv, "--band-names", "red,green,nir"]) == 0
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["tiler:bands"]) == ["red", "green", "nir"]
    assert meta["tiler:output"] == "mask" and "tiler:min_distance_m" not in meta
    assert 0 < float(meta["tiler:threshold"]) < 1


def test_without_torch_one_line(tmp_path):
    """A sitecustomize that makes `import torch` fail, as on an install without the extra."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'torch'\")\n"
        "sys.meta_path.insert(0, _NoTorch())\n"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "tiler.cli", "train", "m.onnx", "--images", "a.tif", "--truth",
         "a.csv"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{root}"},
    )  # fmt: skip
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "tiler: error: tiler train needs PyTorch: pip install 'tiler[train]' (torch is missing)"
    ]


def test_the_threshold_is_the_best_f1_and_among_near_ties_the_truest_count():
    from tiler.accuracy import Score
    from tiler.train.decode import F1_TIE, Choice, best_counting

    def choice(t, tp, fp, fn):
        return Choice(t, Score(tp, fp, fn))

    over = choice(0.5, 800, 200, 180)  # F1 0.808, 1000 found for 980 truth
    tied = choice(0.55, 796, 196, 184)  # F1 0.807, 992 found: a closer count
    worse = choice(0.6, 700, 100, 280)  # exact count would need F1 far below
    assert 0 < over.f1 - tied.f1 < F1_TIE < over.f1 - worse.f1
    assert best_counting([over, tied, worse], over).threshold == 0.55
    assert best_counting([over, worse], over).threshold == 0.5  # no tie: the best F1
    none = choice(float("nan"), 0, 0, 5)
    assert best_counting([], none) is none
