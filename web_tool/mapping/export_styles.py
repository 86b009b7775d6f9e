"""What GIS software needs beside a class map to show it with its classes: the class names and
colours as GDAL reads them, and a QGIS style.

* `aux_xml` — `<map>.tif.aux.xml`, GDAL's own sidecar for a GeoTIFF (the GTiff format keeps
  category names and raster attribute tables there): the class names as GDAL category names, and a
  thematic raster attribute table (value, class, colour, pixels, km²). GDAL, QGIS and ArcGIS read it.
* `qml` — `<map>.qml`, a QGIS style (paletted renderer: each class's colour and name; no data
  transparent). QGIS applies it when it opens `<map>.tif`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from web_tool.mapping.export import ClassStats
from web_tool.rendering.images import hex_to_rgb

#: GDAL's raster attribute table field types and usages (gdal.h: GDALRATFieldType, GDALRATFieldUsage)
GFT_INTEGER, GFT_REAL, GFT_STRING = 0, 1, 2
GFU_GENERIC, GFU_PIXEL_COUNT, GFU_NAME, GFU_MIN_MAX, GFU_RED, GFU_GREEN, GFU_BLUE = 0, 1, 2, 5, 6, 7, 8
RAT_FIELDS = [
    ("Value", GFT_INTEGER, GFU_MIN_MAX),
    ("Class", GFT_STRING, GFU_NAME),
    ("Red", GFT_INTEGER, GFU_RED),
    ("Green", GFT_INTEGER, GFU_GREEN),
    ("Blue", GFT_INTEGER, GFU_BLUE),
    ("Count", GFT_INTEGER, GFU_PIXEL_COUNT),
    ("Area_km2", GFT_REAL, GFU_GENERIC),
]


def _xml(root: ET.Element) -> bytes:
    ET.indent(root)
    # bytes for any encoding but "unicode" (typeshed cannot tell which a str names)
    text: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return text + b"\n"


def aux_xml(classes: list[dict[str, Any]], stats: ClassStats | None = None) -> bytes:
    """GDAL PAM XML for band 1: category names (index = class) and a thematic attribute table."""
    root = ET.Element("PAMDataset")
    band = ET.SubElement(root, "PAMRasterBand", band="1")
    names = ET.SubElement(band, "CategoryNames")
    for c in classes:
        ET.SubElement(names, "Category").text = c["name"]
    table = ET.SubElement(band, "GDALRasterAttributeTable", tableType="thematic")
    for i, (name, kind, usage) in enumerate(RAT_FIELDS):
        field = ET.SubElement(table, "FieldDefn", index=str(i))
        ET.SubElement(field, "Name").text = name
        ET.SubElement(field, "Type").text = str(kind)
        ET.SubElement(field, "Usage").text = str(usage)
    rows = stats.rows() if stats is not None else [{"pixels": 0, "km2": 0.0}] * len(classes)
    for i, (c, row) in enumerate(zip(classes, rows, strict=True)):
        values = [i, c["name"], *hex_to_rgb(c["color"]), row["pixels"], f"{row['km2']:.6f}"]
        element = ET.SubElement(table, "Row", index=str(i))
        for value in values:
            ET.SubElement(element, "F").text = str(value)
    return _xml(root)


def qml(classes: list[dict[str, Any]]) -> bytes:
    """A QGIS layer style: a paletted renderer with each class's colour and name."""
    root = ET.Element("qgis", version="3.28.0", styleCategories="Symbology")
    pipe = ET.SubElement(root, "pipe")
    renderer = ET.SubElement(
        pipe, "rasterrenderer", type="paletted", band="1", opacity="1", alphaBand="-1", nodataColor=""
    )
    ET.SubElement(renderer, "rasterTransparency")
    palette = ET.SubElement(renderer, "colorPalette")
    for i, c in enumerate(classes):
        r, g, b = hex_to_rgb(c["color"])
        ET.SubElement(
            palette,
            "paletteEntry",
            value=str(i),
            color=f"#{r:02x}{g:02x}{b:02x}",
            alpha="255",
            label=c["name"],
        )
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0")
    ET.SubElement(pipe, "huesaturation", saturation="0", grayscaleMode="0", colorizeOn="0")
    ET.SubElement(root, "blendMode").text = "0"
    return b"<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + _xml(root)
