// The page's shared state and a tiny event bus; modules read state and announce changes.

export const state = {
  servers: [], // api.Server, endpoints.js order; servers[0] serves datasets and imagery tiles
  selected: 0, // index of the server whose prediction is drawn on the map
  datasets: [],
  dataset: null, // the chosen entry of GET /datasets
  classes: [], // [{name, color, weight, corrections, pixels}]
  activeClass: 0,
  mode: "predict", // predict | correct | area
  patchPixels: 256,
  view: { visible: true, soft: false, opacity: 0.7, uncertainty: false },
  lastExtent: null, // [xmin, ymin, xmax, ymax] EPSG:3857 of the last prediction
};

const handlers = new Map();

export function on(event, fn) {
  if (!handlers.has(event)) handlers.set(event, []);
  handlers.get(event).push(fn);
}

export function emit(event, detail) {
  for (const fn of handlers.get(event) || []) fn(detail);
}

export const primary = () => state.servers[0];

/** Servers that offer `endpoint` ("POST /retrainModel"). */
export const serversOffering = (endpoint) => state.servers.filter((s) => s.offers(endpoint));

export const anyOffers = (endpoint) => state.servers.some((s) => s.offers(endpoint));
