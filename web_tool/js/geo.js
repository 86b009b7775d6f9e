// Geometry the page needs: EPSG:3857 extents ⇄ Leaflet lat/lng bounds, squares around a click.
import { L } from "./leaflet.js";

const mercator = L.Projection.SphericalMercator;

/** [x, y] in EPSG:3857 metres of a Leaflet LatLng. */
export function toMercator(latlng) {
  const p = mercator.project(L.latLng(latlng));
  return [p.x, p.y];
}

export function fromMercator([x, y]) {
  return mercator.unproject(L.point(x, y));
}

/** Leaflet LatLngBounds of an extent [xmin, ymin, xmax, ymax] in EPSG:3857. */
export function extentToBounds([xmin, ymin, xmax, ymax]) {
  return L.latLngBounds(fromMercator([xmin, ymin]), fromMercator([xmax, ymax]));
}

/** [xmin, ymin, xmax, ymax] in EPSG:3857 of Leaflet LatLngBounds. */
export function boundsToExtent(bounds) {
  const [xmin, ymin] = toMercator(bounds.getSouthWest());
  const [xmax, ymax] = toMercator(bounds.getNorthEast());
  return [xmin, ymin, xmax, ymax];
}

/** EPSG:3857 units that span `metres` on the ground at `lat` (web mercator stretches by 1/cos). */
export function mercatorUnits(metres, lat) {
  return metres / Math.max(Math.cos((lat * Math.PI) / 180), 1e-6);
}

/** The square extent of `pixels` x `pixels` dataset pixels (`resolution` m) centred on `latlng`. */
export function squareAround(latlng, pixels, resolution) {
  const [x, y] = toMercator(latlng);
  const half = mercatorUnits(pixels * resolution, latlng.lat) / 2;
  return [x - half, y - half, x + half, y + half];
}

/** A GeoJSON object → {geometry, crs} for /predTile (its polygons, merged), or throws. */
export function geojsonArea(obj) {
  const polygons = [];
  const visit = (g) => {
    if (!g) return;
    if (g.type === "FeatureCollection") g.features.forEach((f) => visit(f.geometry));
    else if (g.type === "Feature") visit(g.geometry);
    else if (g.type === "GeometryCollection") g.geometries.forEach(visit);
    else if (g.type === "Polygon") polygons.push(g.coordinates);
    else if (g.type === "MultiPolygon") polygons.push(...g.coordinates);
  };
  visit(obj);
  if (!polygons.length) throw new Error("the file holds no Polygon or MultiPolygon");
  const geometry = polygons.length === 1
    ? { type: "Polygon", coordinates: polygons[0] }
    : { type: "MultiPolygon", coordinates: polygons };
  const named = obj.crs?.properties?.name || "";
  const match = /EPSG:+(\d+)/i.exec(named);
  const crs = match ? Number(match[1]) : /CRS84/i.test(named) || !named ? 4326 : NaN;
  if (!Number.isFinite(crs)) throw new Error(`unsupported CRS ${named} in the GeoJSON file`);
  return { geometry, crs };
}

/** Leaflet LatLngBounds of a GeoJSON area in EPSG:4326 or 3857 (for drawing its outline). */
export function areaLayerBounds({ geometry, crs }) {
  const ring = geometry.type === "Polygon" ? geometry.coordinates.flat() : geometry.coordinates.flat(2);
  const pts = ring.map(([x, y]) => (crs === 3857 ? fromMercator([x, y]) : L.latLng(y, x)));
  return L.latLngBounds(pts);
}

/** The zoom whose tile pixels come nearest the dataset's resolution (the server's native zoom). */
export function nativeZoom(dataset) {
  const [, s, , n] = dataset.bounds_4326;
  const world = 2 * Math.PI * 6378137 * Math.cos((((s + n) / 2) * Math.PI) / 180);
  return Math.max(2, Math.min(20, Math.round(Math.log2(world / (256 * dataset.resolution)))));
}

/** Area in km² on the sphere of a ring of LatLngs (spherical excess; closes the ring itself). */
export function ringAreaKm2(latlngs) {
  const R = 6378137;
  const rad = Math.PI / 180;
  let sum = 0;
  for (let i = 0; i < latlngs.length; i++) {
    const a = latlngs[i];
    const b = latlngs[(i + 1) % latlngs.length];
    sum += (b.lng - a.lng) * rad * (2 + Math.sin(a.lat * rad) + Math.sin(b.lat * rad));
  }
  return Math.abs((sum * R * R) / 2) / 1e6;
}

/** GeoJSON geometry (EPSG:4326) of Leaflet LatLngs rings: [[LatLng...]] → Polygon coordinates. */
export function polygonGeoJSON(rings) {
  return {
    type: "Polygon",
    coordinates: rings.map((ring) => {
      const coords = ring.map((p) => [p.lng, p.lat]);
      return [...coords, coords[0]];
    }),
  };
}
