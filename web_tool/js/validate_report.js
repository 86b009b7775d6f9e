// The accuracy report in the page: overall accuracy, a table of user's and producer's accuracy per
// class, a chart of each class's area (what the map's pixels add up to, and what the sample
// estimates, with its 95 % interval), the error matrix, notes, and the CSV download.
import { el } from "./ui.js";
import { svg } from "./chart.js";

const pct = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(1));
const pm = (e) => (e.value === null ? "–" : e.ci95 === null || e.ci95 === 0 ? pct(e.value) : `${pct(e.value)} ± ${(100 * e.ci95).toFixed(1)}`);
const km2 = (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(3) : v.toFixed(1));

/** Save `blob` as a file called `name` (a download the browser starts). */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Bars per class: mapped km² (pale) and the estimate (class colour) with its 95 % interval. */
export function areaIntervalChart(classes, { width = 300, row = 26, labelWidth = 64 } = {}) {
  const shown = classes.filter((c) => c.mapped_km2 > 0 || (c.estimated_km2.value ?? 0) > 0);
  const top = (c) => Math.max(c.mapped_km2, (c.estimated_km2.value ?? 0) + (c.estimated_km2.ci95 ?? 0));
  const max = Math.max(...shown.map(top), 1e-12);
  const height = shown.length * row + 18;
  const scale = (v) => labelWidth + (Math.max(0, v) / max) * (width - labelWidth - 8);
  const chart = svg("svg", { class: "validate-chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "area per class: mapped, and estimated from the sample with its 95 % interval" });
  shown.forEach((c, i) => {
    const y = 4 + i * row;
    const e = c.estimated_km2;
    chart.append(
      svg("text", { x: labelWidth - 6, y: y + 14, "text-anchor": "end", class: "chart-label" }, c.name),
      svg("rect", { x: labelWidth, y, width: scale(c.mapped_km2) - labelWidth, height: 8, class: "bar-mapped" }),
    );
    if (e.value !== null) {
      const bar = svg("rect", { x: labelWidth, y: y + 10, width: Math.max(1, scale(e.value) - labelWidth), height: 9, fill: c.color || "#888", class: "bar-estimated" });
      bar.append(svg("title", {}, `${c.name}: mapped ${km2(c.mapped_km2)} km², estimated ${km2(e.value)}${e.ci95 === null ? "" : ` ± ${km2(e.ci95)}`} km²`));
      chart.append(bar);
      if (e.ci95) {
        const [x0, x1, ym] = [scale(e.value - e.ci95), scale(e.value + e.ci95), y + 14.5];
        chart.append(svg("path", { d: `M${x0},${ym}H${x1}M${x0},${ym - 4}V${ym + 4}M${x1},${ym - 4}V${ym + 4}`, class: "ci-whisker" }));
      }
    }
  });
  chart.append(svg("text", { x: labelWidth, y: height - 3, class: "chart-legend" }, "grey: mapped · colour: estimate ± 95 % CI"));
  return chart;
}

function table(head, rows) {
  return el("div", { class: "validate-scroll" }, el("table", { class: "validate-table" },
    el("thead", {}, el("tr", {}, ...head.map(([text, title]) => el("th", { title }, text)))),
    el("tbody", {}, ...rows.map(([name, ...cells]) => el("tr", {}, el("th", {}, name), ...cells.map((c) => el("td", {}, c)))))));
}

const listed = (report) => report.classes.filter((c) => c.mapped_km2 > 0 || c.reference_points > 0);

function accuracyTable(report) {
  return table(
    [["class"], ["user’s %", "of what the map calls this class, the share that is it"],
      ["producer’s %", "of what is this class, the share the map finds"]],
    listed(report).map((c) => [c.name, pm(c.users), pm(c.producers)]),
  );
}

function areaTable(report) {
  const census = report.kind === "census";
  const estimate = (e) => `${km2(e.value)}${e.ci95 ? ` ± ${km2(e.ci95)}` : ""}`;
  return table(
    [["class"], ["mapped km²", "what the map's pixels add up to"],
      [census ? "reference km²" : "estimated km²", census ? "what the reference's pixels add up to" : "from the sample, ± 95 % CI"]],
    listed(report).map((c) => [c.name, km2(c.mapped_km2), estimate(c.estimated_km2)]),
  );
}

function errorMatrix(report) {
  const names = report.classes.map((c) => c.name);
  const counts = report.error_matrix.counts;
  return el("details", { class: "validate-matrix" },
    el("summary", {}, `Error matrix (${report.kind === "census" ? "pixels" : "points"}; rows: map, columns: reference)`),
    el("div", { class: "validate-scroll" }, el("table", { class: "validate-table" },
      el("thead", {}, el("tr", {}, el("th", {}, ""), ...names.map((n) => el("th", {}, n)))),
      el("tbody", {}, ...counts.map((row, i) => el("tr", {}, el("th", {}, names[i]),
        ...row.map((v, j) => el("td", { class: i === j ? "diagonal" : "" }, String(v)))))))));
}

/** The report (JSON from the server) as a panel element; `csv()` downloads the CSV when given. */
export function renderReport(report, { csv } = {}) {
  const what = { sample: "sample points", points: "reference points", census: "pixels compared with the reference" }[report.kind];
  const o = report.overall;
  const headline = report.complete
    ? `Overall accuracy ${pm(o)} %${report.kind === "census" ? " (every pixel: no sampling error)" : " (95 % confidence interval)"}`
    : "Not enough answers for estimates yet";
  const box = el("div", { class: "validate-result", "aria-live": "polite" },
    el("p", { class: "validate-headline" }, el("strong", {}, headline), el("br"), el("span", { class: "muted" }, `from ${report.n} ${what}`)));
  if (report.complete) box.append(accuracyTable(report), areaTable(report), areaIntervalChart(report.classes), errorMatrix(report));
  if (report.notes?.length) box.append(el("ul", { class: "validate-notes" }, ...report.notes.map((n) => el("li", {}, n))));
  if (csv) box.append(el("button", { type: "button", class: "small", onclick: csv }, "Download CSV"));
  return box;
}
