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
