// A small horizontal bar chart of class areas, in plain SVG (no library).
const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** rows: [{name, color, percent, km2, pixels}] → an <svg> element. */
export function areaChart(rows, { width = 300, barHeight = 16, gap = 6, labelWidth = 70, valueWidth = 112 } = {}) {
  const value = (r) => r.percent ?? r.km2 ?? r.pixels ?? 0;
  const max = Math.max(...rows.map(value), 1e-9);
  const height = rows.length * (barHeight + gap) + gap;
  const chart = svg("svg", {
    class: "area-chart",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": "area per class",
  });
  const barSpace = width - labelWidth - valueWidth;
  rows.forEach((r, i) => {
    const y = gap + i * (barHeight + gap);
    const w = Math.max(1, (value(r) / max) * barSpace);
    const parts = [];
    if (r.percent !== null && r.percent !== undefined) parts.push(`${r.percent.toFixed(1)} %`);
    if (r.km2 !== null && r.km2 !== undefined) parts.push(`${r.km2 < 10 ? r.km2.toFixed(2) : r.km2.toFixed(0)} km²`);
    if (!parts.length && r.pixels !== null) parts.push(`${r.pixels} px`);
    chart.append(
      svg("text", { x: labelWidth - 6, y: y + barHeight - 4, "text-anchor": "end", class: "chart-label" }, r.name),
      svg("rect", { x: labelWidth, y, width: w, height: barHeight, rx: 2, fill: r.color || "#888", class: "chart-bar" }),
      svg("text", { x: labelWidth + w + 4, y: y + barHeight - 4, class: "chart-value" }, parts.join(" · ")),
    );
    chart.lastChild.previousSibling.append(svg("title", {}, `${r.name}: ${parts.join(", ")}`));
  });
  return chart;
}

/** The learning curve: cross-validated accuracy (±2 standard errors) against the number of clicks,
 * one point per retrain; a retrain flagged worse is drawn in red. points: [{corrections, accuracy,
 * accuracy_se, worse}] (points without an accuracy are skipped). → an <svg> element. */
export function curveChart(points, { width = 260, height = 120, pad = 28 } = {}) {
  const data = points.filter((p) => typeof p.accuracy === "number");
  const maxX = Math.max(...data.map((p) => p.corrections), 1);
  const x = (n) => pad + (n / maxX) * (width - pad - 8);
  const y = (a) => height - pad + 6 - a * (height - pad - 6);
  const chart = svg("svg", {
    class: "curve-chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `accuracy on held-out clicks after each retrain: ${data.map((p) => `${p.corrections} clicks ${Math.round(p.accuracy * 100)} %`).join(", ")}`,
  });
  chart.append(
    svg("line", { x1: pad, y1: y(0), x2: width - 8, y2: y(0), class: "axis" }),
    svg("line", { x1: pad, y1: y(0), x2: pad, y2: y(1), class: "axis" }),
    svg("text", { x: pad - 4, y: y(1) + 4, "text-anchor": "end", class: "chart-label" }, "100 %"),
    svg("text", { x: pad - 4, y: y(0.5) + 4, "text-anchor": "end", class: "chart-label" }, "50 %"),
    svg("text", { x: width - 8, y: height - 4, "text-anchor": "end", class: "chart-label" }, `${maxX} clicks`),
  );
  const path = data.map((p, i) => `${i ? "L" : "M"}${x(p.corrections).toFixed(1)},${y(p.accuracy).toFixed(1)}`).join(" ");
  if (data.length > 1) chart.append(svg("path", { d: path, class: "curve-line", fill: "none" }));
  for (const p of data) {
    const se = 2 * (p.accuracy_se || 0);
    chart.append(
      svg("line", { x1: x(p.corrections), x2: x(p.corrections), y1: y(Math.min(1, p.accuracy + se)), y2: y(Math.max(0, p.accuracy - se)), class: "curve-err" }),
      svg("circle", { cx: x(p.corrections), cy: y(p.accuracy), r: 3, class: p.worse ? "curve-point worse" : "curve-point" }),
    );
  }
  return chart;
}
