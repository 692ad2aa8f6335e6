"""A 10-gigapixel input made cheaply: a VRT that places one GeoTIFF ten times.

    python -m benchmarks.tenfold SRC OUT.vrt

The copies tile a 2 x 5 grid on the source's pixel grid (the first at the
source's own place), so tiler reads it as one mosaic (:mod:`tiler.io.mosaic`,
a user's VRT) of ``2 h x 5 w`` pixels without a byte of it written: 32 768^2
becomes 65 536 x 163 840 (10.7 GP). The copies' alpha bands come along, so
the field's footprint repeats with its nodata border.
"""

from __future__ import annotations

import sys
from pathlib import Path
from xml.sax.saxutils import escape

ROWS, COLS = 2, 5


def tenfold(src: Path, out: Path, rows: int = ROWS, cols: int = COLS) -> Path:
    """Write ``out``, a VRT of ``rows`` x ``cols`` copies of the GeoTIFF ``src``."""
    import rasterio

    src = Path(src).resolve()
    with rasterio.open(src) as ds:
        h, w, t = ds.height, ds.width, ds.transform
        gdal_type = {"uint8": "Byte", "uint16": "UInt16", "float32": "Float32"}[ds.dtypes[0]]
        block_rows, block_cols = ds.block_shapes[0]
        colours = [ci.name.capitalize() for ci in ds.colorinterp]
        crs = escape(ds.crs.to_wkt())
    bands = []
    for band, colour in enumerate(colours, start=1):
        sources = "".join(
            f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(str(src))}'
            f"</SourceFilename><SourceBand>{band}</SourceBand>"
            f'<SourceProperties RasterXSize="{w}" RasterYSize="{h}" DataType="{gdal_type}" '
            f'BlockXSize="{block_cols}" BlockYSize="{block_rows}"/>'
            f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
            f'<DstRect xOff="{c * w}" yOff="{r * h}" xSize="{w}" ySize="{h}"/></SimpleSource>'
            for r in range(rows)
            for c in range(cols)
        )
        bands.append(
            f'<VRTRasterBand dataType="{gdal_type}" band="{band}">'
            f"<ColorInterp>{colour}</ColorInterp>{sources}</VRTRasterBand>"
        )
    geotransform = ", ".join(repr(v) for v in (t.c, t.a, t.b, t.f, t.d, t.e))
    out.write_text(
        f'<VRTDataset rasterXSize="{w * cols}" rasterYSize="{h * rows}"><SRS>{crs}</SRS>'
        f"<GeoTransform>{geotransform}</GeoTransform>{''.join(bands)}</VRTDataset>\n"
    )
    return out


if __name__ == "__main__":
    print(tenfold(Path(sys.argv[1]), Path(sys.argv[2])))
