// Every call the page makes to a server lives here, and so does the wire format (API.md).
// Other modules speak in plain values (extents, class lists, ids) and get plain values back;
// failures arrive as ApiError, whose message is always readable ("<server>: <what is wrong>").
// Checkpoints and jobs belong to a session: the reads below ask for this page's own (?session=).
import { withSession } from "./sessions.js";

const TOKEN_KEY = "landcover.token."; // + server URL → the access token the user gave

export class ApiError extends Error {
  constructor(server, message, status = 0) {
    super(status === 0 && message.startsWith("cannot reach") ? message : `${server.name}: ${message}`);
    this.name = "ApiError";
    this.server = server;
    this.status = status; // HTTP status; 0 = the server could not be reached
    this.detail = message;
  }
}

/** "POST /jobs/<id>" → a matcher for "POST /jobs/abc" style strings. */
function ruleMatcher(rule) {
  const [method, path] = rule.split(" ");
  const pattern = path.replace(/<[^>]+>/g, "[^/]+").replace(/[.]/g, "\\.");
  return { method, regex: new RegExp(`^${pattern}$`) };
}

/** An extent object as the server wants it, from [xmin, ymin, xmax, ymax] in EPSG:`wkid`. */
export function extentBody([xmin, ymin, xmax, ymax], wkid = 3857) {
  return { xmin, ymin, xmax, ymax, spatialReference: { latestWkid: wkid } };
}

/** A base64 PNG field of a response as something an <img> or L.imageOverlay can show. */
export function pngUrl(base64) {
  return base64 ? `data:image/png;base64,${base64}` : null;
}

export class Server {
  constructor({ name, url }, pageUrl = window.location.href) {
    this.url = new URL(url || "./", pageUrl).href.replace(/\/?$/, "/");
    this.name = name || this.url;
    this.rules = []; // from GET /health; empty = not asked yet
    this.modelName = "";
    this.asking = null; // the pending token prompt, shared by calls refused at the same time
  }

  href(path) {
    return new URL(path.replace(/^\//, ""), this.url).href;
  }

  // --- access token (servers started with --token) -------------------------------------------

  get token() {
    return localStorage.getItem(TOKEN_KEY + this.url) || "";
  }

  set token(value) {
    if (value) localStorage.setItem(TOKEN_KEY + this.url, value);
    else localStorage.removeItem(TOKEN_KEY + this.url);
  }

  /** A URL the browser fetches by itself (tiles, downloads): the token rides as ?access_token=. */
  withToken(url) {
    if (!this.token) return url;
    return `${url}${url.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(this.token)}`;
  }

  /** Ask the user for the token once (however many calls were refused); → whether one was given. */
  askToken(reason) {
    this.asking ??= Promise.resolve().then(() => {
      const given = window.prompt(`${this.name} needs an access token (${reason}).\nToken:`, "");
      this.token = given ? given.trim() : "";
      this.asking = null;
      return Boolean(this.token);
    });
    return this.asking;
  }

  /** Does the server offer `method path` (e.g. "POST /retrainModel", "GET /jobs/x")? */
  offers(endpoint) {
    const [method, path] = endpoint.split(" ");
    return this.rules.some((r) => r.method === method && r.regex.test(path));
  }

  async request(method, path, body, retried = false, signal = undefined) {
    const init = { method, headers: {}, signal };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const sentToken = this.token;
    if (sentToken) init.headers.Authorization = `Bearer ${sentToken}`;
    let response;
    try {
      response = await fetch(/^https?:/.test(path) ? path : this.href(path), init);
    } catch (err) {
      if (signal?.aborted) throw err; // cancelled by the page: not a failure to report
      throw new ApiError(this, `cannot reach server ${this.name} (${this.url})`);
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      if (!response.ok) {
        throw new ApiError(this, `${method} ${path} failed: HTTP ${response.status} ${response.statusText}`, response.status);
      }
      throw new ApiError(this, `${method} ${path} answered something that is not JSON`, response.status);
    }
    if (!response.ok) {
      const reason = data && typeof data.error === "string" && data.error ? data.error : `HTTP ${response.status}`;
      if (response.status === 401 && !retried) {
        // another call may have been given the token meanwhile; otherwise ask the user once
        if (this.token && this.token !== sentToken) return this.request(method, path, body, true, signal);
        if (await this.askToken(reason)) return this.request(method, path, body, true, signal);
      }
      throw new ApiError(this, reason, response.status);
    }
    return data;
  }

  // --- discovery and display ---------------------------------------------------------------

  async health() {
    const data = await this.request("GET", "/health");
    // "GET /<path:path>" (the static files) would match anything: only rules with a fixed part count
    const rules = (data.endpoints || []).filter((r) => typeof r === "string" && !/^\S+ \/<[^>]+>$/.test(r));
    this.rules = rules.map(ruleMatcher);
    this.modelName = data.model_name || "";
    return data;
  }

  datasets() {
    return this.request("GET", "/datasets");
  }

  tileUrlTemplate(dataset) {
    return this.withToken(`${this.url}tiles/${encodeURIComponent(dataset)}/{z}/{x}/{y}.png`); // keeps {z}
  }

  // --- seed endpoints ------------------------------------------------------------------------

  /** → {modelName, hard, soft, uncertainty, suggestions[], suggestionsBy} (images as data: URLs;
   * suggestionsBy "random" before the session's first retrain, else "uncertainty"). The imagery
   * (`input_naip`, 80 % of the answer) is left out: the map shows it as tiles. */
  async predPatch({ extent, weights, classes, dataset, session, signal }) {
    const body = { extent: extentBody(extent), weights, classes, dataset, session, input_naip: false };
    const data = await this.request("POST", "/predPatch", body, false, signal);
    return {
      modelName: data.model_name || this.modelName,
      hard: pngUrl(data.output_hard),
      soft: pngUrl(data.output_soft),
      uncertainty: pngUrl(data.output_uncertainty),
      suggestions: parseSuggestions(data.suggestions),
      suggestionsBy: data.suggestions_by,
    };
  }

  async getInput({ extent, dataset }) {
    const data = await this.request("POST", "/getInput", { extent: extentBody(extent), dataset });
    return pngUrl(data.input_naip);
  }

  // --- human in the loop ---------------------------------------------------------------------

  async createSession() {
    const data = await this.request("POST", "/sessions", {});
    return data.session;
  }

  /** Label the pixels inside `extent` ([xmin, ymin, xmax, ymax], EPSG:3857), or inside a GeoJSON
   *  `geometry` in EPSG:4326, as class `value`. */
  async recordCorrection({ extent, geometry, value, session, dataset }) {
    const area = geometry ? { geometry, crs: 4326 } : { extent: extentBody(extent) };
    const data = await this.request("POST", "/recordCorrection", { ...area, value, session, dataset });
    return { count: Number(data.count) || 0 };
  }

  /** Un-label the corrected pixels inside a GeoJSON `geometry` (EPSG:4326) → {count, message}. */
  async deleteCorrections({ geometry, session, dataset }) {
    const data = await this.request("POST", "/deleteCorrections", { geometry, crs: 4326, session, dataset });
    return { count: Number(data.count) || 0, message: data.message || "" };
  }

  /** The session's corrections of `dataset` (newer than id `after`) as a GeoJSON FeatureCollection. */
  corrections({ session, dataset, after = 0 }) {
    const query = new URLSearchParams({ dataset, after: String(after) });
    if (session) query.set("session", session);
    return this.request("GET", `/corrections?${query}`);
  }

  /** An export area checked by the server → {geometry (EPSG:4326), area_km2, imagery_km2, max_km2, fits}. */
  aoi({ area, dataset }) {
    const body = area.extent ? { extent: extentBody(area.extent) } : { geometry: area.geometry, crs: area.crs };
    return this.request("POST", "/aoi", { ...body, dataset });
  }

  /** → {message, metrics: [{name, values: {metric: number}}], summary: {metric: number},
   *     curve: [{corrections, accuracy, accuracy_se, worse}], worse: bool, note} */
  async retrain({ session, dataset }) {
    const data = await this.request("POST", "/retrainModel", { session, dataset });
    const m = data.metrics && typeof data.metrics === "object" ? data.metrics : {};
    return {
      message: data.message || "model retrained",
      ...parseMetrics(data),
      curve: Array.isArray(data.curve) ? data.curve : [],
      worse: m.worse === true,
      note: typeof m.note === "string" ? m.note : "",
    };
  }

  async undo({ session }) {
    const data = await this.request("POST", "/doUndo", { session });
    return { message: data.message || "", count: data.count, undone: data.undone ?? null };
  }

  async reset({ session }) {
    const data = await this.request("POST", "/resetModel", { session });
    return { message: data.message || "" };
  }

  /** → {message, classes: [{name, color}] | null (the session's classes, when sent back)} */
  async addClass({ session, name, color }) {
    const data = await this.request("POST", "/addClass", { session, name, color });
    return { message: data.message || "", classes: Array.isArray(data.classes) ? data.classes : null };
  }

  /** The session as the server sees it → {classes, corrections, pixels} (null fields if absent). */
  async sessionInfo(session) {
    const data = await this.request("GET", `/sessions/${encodeURIComponent(session)}`);
    return {
      classes: Array.isArray(data.classes) ? data.classes : null,
      corrections: data.corrections ?? null,
      pixels: data.pixels ?? null,
      version: data.version ?? null,
      undoSteps: data.undo_steps ?? null,
      nextUndo: data.next_undo ?? null,
      parent: data.parent ?? null,
    };
  }

  // --- checkpoints ---------------------------------------------------------------------------

  async saveCheckpoint({ session, name }) {
    const data = await this.request("POST", "/checkpoints", { session, name });
    return data.checkpoint;
  }

  /** The checkpoints this page's session saved → [{id, name, time, corrections, share}] newest first */
  async listCheckpoints() {
    const data = await withSession(this, (session) => this.request("GET", withQuery("/checkpoints", { session })));
    const list = Array.isArray(data) ? data : data.checkpoints || [];
    return list
      .map((c) => ({
        id: String(c.id ?? c.checkpoint ?? ""),
        name: String(c.name ?? ""),
        time: c.time ?? c.created ?? "",
        corrections: c.corrections ?? c.n_corrections ?? c.count ?? null,
        parent: c.parent ?? null,
        share: c.share || null,
      }))
      .sort((a, b) => String(b.time).localeCompare(String(a.time)));
  }

  /** Share a checkpoint of `session` → {share (its secret), link (an absolute URL that shows it)} */
  async shareCheckpoint({ checkpoint, session }) {
    const data = await this.request("POST", `/checkpoints/${encodeURIComponent(checkpoint)}/share`, { session });
    return { share: data.share, link: this.href(data.link) };
  }

  /** Load a checkpoint: one of `session`'s (`checkpoint`: its id) or one shared with it (`share`). */
  async loadCheckpoint({ checkpoint, share, session }) {
    const data = await this.request("POST", "/doLoad", share ? { share, session } : { checkpoint, session });
    return {
      message: data.message || "",
      session: data.session,
      classes: Array.isArray(data.classes) ? data.classes : null,
    };
  }

  // --- large-area jobs -----------------------------------------------------------------------

  /** `area` is {extent: [xmin, ymin, xmax, ymax]} (EPSG:3857) or {geometry, crs}. → job id */
  async predTile({ area, session, dataset, weights, classes, vector }) {
    const body = { session, dataset, weights, classes, vector };
    if (area.extent) body.extent = extentBody(area.extent);
    else Object.assign(body, { geometry: area.geometry, crs: area.crs });
    const data = await this.request("POST", "/predTile", body);
    return data.job;
  }

  /** → {state, progress 0..1, message, error, links: [{key, label, href}], stats, statsHref} */
  async job(id) {
    const path = `/jobs/${encodeURIComponent(id)}`;
    const data = await withSession(this, (session) => this.request("GET", withQuery(path, { session })));
    return parseJob(this, data);
  }

  cancelJob(id) {
    const path = `/jobs/${encodeURIComponent(id)}`;
    return withSession(this, (session) => this.request("DELETE", withQuery(path, { session })));
  }

  /** Class statistics of a finished job, from the JSON link its outputs name. */
  async jobStats(href) {
    return parseStats(await this.request("GET", href));
  }

  // --- accuracy of a finished map (validation samples live under their job) --------------------

  /** Finished jobs with a class map → [{id, created (s), dataset, areaKm2}], newest first. */
  async finishedJobs() {
    const data = await withSession(this, (session) => this.request("GET", withQuery("/jobs", { session })));
    return (Array.isArray(data) ? data : [])
      .filter((j) => j.state === "done" && j.outputs?.cog)
      .map((j) => ({ id: String(j.job), created: Number(j.created) || 0, dataset: j.dataset || "", areaKm2: j.area_km2 }));
  }

  samples(job, session) {
    return this.request("GET", withQuery(`/jobs/${encodeURIComponent(job)}/samples`, { session }));
  }

  /** A new stratified random sample of the job's map → the sample (design, progress, next point). */
  createSample(job, { total, minPerClass, session }) {
    return this.request("POST", `/jobs/${encodeURIComponent(job)}/samples`, { total, min_per_class: minPerClass, session });
  }

  /** The sample with every point (a point's map class stays null until it is answered). */
  sample(job, sample, session) {
    return this.request("GET", withQuery(samplePath(job, sample), { session }));
  }

  /** `answer`: a class index, "unsure" or "skip" → {point (its map class revealed), progress, next} */
  answerPoint(job, sample, { point, answer, session }) {
    return this.request("POST", `${samplePath(job, sample)}/answers`, { point, answer, session });
  }

  sampleReport(job, sample, session) {
    return this.request("GET", withQuery(`${samplePath(job, sample)}/report`, { session }));
  }

  sampleReportCsv(job, sample, session) {
    return this.blob(withQuery(`${samplePath(job, sample)}/report.csv`, { session }));
  }

  /** `reference`: {labels: true} | {raster: base64} | {points: GeoJSON, property}, + codes → a report */
  compareReference(job, { session, ...reference }) {
    return this.request("POST", `/jobs/${encodeURIComponent(job)}/reference`, { ...reference, session });
  }

  /** A download that is not JSON (a CSV report), fetched with the token header → Blob. */
  async blob(path) {
    const headers = this.token ? { Authorization: `Bearer ${this.token}` } : {};
    let response;
    try {
      response = await fetch(this.href(path), { headers });
    } catch {
      throw new ApiError(this, `cannot reach server ${this.name} (${this.url})`);
    }
    if (!response.ok) {
      const data = await response.json().catch(() => null);
      throw new ApiError(this, data?.error || `GET ${path} failed: HTTP ${response.status}`, response.status);
    }
    return response.blob();
  }
}

function samplePath(job, sample) {
  return `/jobs/${encodeURIComponent(job)}/samples/${encodeURIComponent(sample)}`;
}

/** `path` with the defined `params` as a query string. */
function withQuery(path, params) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null));
  return query.size ? `${path}?${query}` : path;
}

// --- response parsing (tolerant of the shapes API.md leaves open) ------------------------------

/** Points to label next → [[x, y] in EPSG:3857 or {lat, lng}], whatever shape they came in. */
export function parseSuggestions(raw) {
  if (!Array.isArray(raw)) return [];
  const points = [];
  for (const p of raw) {
    if (Array.isArray(p) && p.length >= 2) points.push(toPoint(p[0], p[1]));
    else if (p && typeof p === "object") {
      if ("lat" in p) points.push({ lat: +p.lat, lng: +(p.lng ?? p.lon) });
      else if ("x" in p) points.push(toPoint(p.x, p.y, p.spatialReference?.latestWkid ?? p.crs));
      else if (p.extent) {
        const e = p.extent;
        points.push(toPoint((e.xmin + e.xmax) / 2, (e.ymin + e.ymax) / 2, e.spatialReference?.latestWkid));
      }
    }
  }
  return points.filter((p) => (p.xy ? p.xy.every(Number.isFinite) : Number.isFinite(p.lat + p.lng)));
}

function toPoint(x, y, wkid) {
  if (wkid === 4326 || wkid === "EPSG:4326") return { lat: +y, lng: +x };
  return { xy: [+x, +y] };
}

/** Per-class hold-out metrics, from {metrics: {class: {m: v}}} or {metrics: [{name, m: v}]}. */
export function parseMetrics(data) {
  const raw = data.metrics ?? data.holdout ?? data.hold_out ?? null;
  const perClass = [];
  const summary = {};
  const numbers = (obj) =>
    Object.fromEntries(
      Object.entries(obj).filter(([k, v]) => k !== "class" && typeof v === "number" && Number.isFinite(v)),
    );
  if (Array.isArray(raw)) {
    for (const row of raw) perClass.push({ name: String(row.name ?? row.class ?? ""), values: numbers(row), note: row.note });
  } else if (raw && typeof raw === "object") {
    const classes = raw.per_class ?? raw.classes ?? raw;
    if (Array.isArray(classes)) {
      for (const row of classes)
        perClass.push({ name: String(row.name ?? row.class ?? ""), values: numbers(row), note: row.note });
    } else {
      for (const [name, v] of Object.entries(classes)) {
        if (v && typeof v === "object") perClass.push({ name, values: numbers(v) });
        else if (typeof v === "number") summary[name] = v;
      }
    }
    Object.assign(summary, numbers(raw));
  }
  for (const key of ["accuracy", "mean_iou", "miou", "loss"]) {
    if (typeof data[key] === "number") summary[key] = data[key];
  }
  return { metrics: perClass, summary };
}

const OUTPUT_LABELS = {
  cog: "class map (Cloud-Optimized GeoTIFF)",
  aux: "class names for GDAL/QGIS (.tif.aux.xml, keep beside the GeoTIFF)",
  qml: "QGIS style (.qml, keep beside the GeoTIFF)",
  gpkg: "class polygons (GeoPackage)",
  geojson: "class polygons (GeoJSON)",
  preview: "preview (PNG)",
  overlay: "web-map overlay (PNG, EPSG:3857)",
  stats_json: "class statistics (JSON)",
  stats_csv: "class statistics (CSV)",
};

/** A job output as a link: a bare file name lives under /downloads/, a path or URL as given. */
function downloadHref(server, value) {
  const href = /[/:]/.test(value) ? server.href(value) : server.href(`downloads/${encodeURIComponent(value)}`);
  return server.withToken(href);
}

function parseJob(server, data) {
  const outputs = data.outputs && typeof data.outputs === "object" ? data.outputs : {};
  const links = [];
  let statsHref = null;
  let stats = data.stats && typeof data.stats === "object" ? parseStats(data.stats) : null;
  for (const [key, value] of Object.entries(outputs)) {
    if (typeof value === "string" && value) {
      const href = downloadHref(server, value);
      links.push({ key, label: OUTPUT_LABELS[key] || key.replace(/_/g, " "), href });
      if (!statsHref && /stat/i.test(key) && /json/i.test(key + value)) statsHref = href;
    } else if (!stats && key.startsWith("stat") && value && typeof value === "object") {
      stats = parseStats(value);
    }
  }
  const progress = Math.max(0, Math.min(1, Number(data.progress) || 0));
  const state = data.state || "queued";
  return {
    state,
    checkpoint: data.checkpoint || null,
    overlay: links.find((l) => l.key === "overlay")?.href || null,
    bounds: Array.isArray(data.stats?.bounds_4326) ? data.stats.bounds_4326 : null,
    progress: state === "done" ? 1 : progress,
    message: data.message || "",
    error: data.error || (state === "failed" ? data.message || "" : ""),
    links,
    stats,
    statsHref,
  };
}

/** Class statistics → [{name, color, pixels, percent, km2}], whatever shape they came in. */
export function parseStats(raw) {
  let rows = raw;
  if (raw && !Array.isArray(raw)) rows = raw.classes ?? raw.per_class ?? raw.stats ?? raw;
  if (rows && !Array.isArray(rows) && typeof rows === "object") {
    rows = Object.entries(rows).map(([name, v]) => ({ name, ...(typeof v === "object" ? v : { pixels: v }) }));
  }
  if (!Array.isArray(rows)) return [];
  const num = (...values) => {
    const v = values.find((x) => typeof x === "number" && Number.isFinite(x));
    return v === undefined ? null : v;
  };
  return rows.map((r, i) => ({
    name: String(r.name ?? r.class ?? `class ${i}`),
    color: typeof r.color === "string" ? r.color : null,
    pixels: num(r.pixels, r.count, r.pixel_count),
    percent: num(r.percent, r.pct, r.percentage, r["%"]),
    km2: num(r.km2, r.area_km2, r.sq_km),
  }));
}
