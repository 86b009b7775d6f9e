// The on-map legend: each class's colour and name, what the uncertainty layer's magenta means,
// and what the map's marks are (corrections, suggested points, the predicted square, export areas).
// It follows the classes' colours and which layers are shown; it folds away on small screens.
import { L } from "./leaflet.js";
import { state, on } from "./state.js";
import { el } from "./ui.js";
import { isOn } from "./layers.js";

let body = null;

export function initLegend(map) {
  const Legend = L.Control.extend({
    options: { position: "bottomright" },
    onAdd() {
      body = el("div", { class: "legend-body", id: "legend-body" });
      const details = el("details", { class: "legend", open: window.innerWidth > 700 },
        el("summary", {}, "Legend"), body);
      L.DomEvent.disableClickPropagation(details);
      L.DomEvent.disableScrollPropagation(details);
      return details;
    },
  });
  new Legend().addTo(map);
  for (const event of ["dataset", "classes-changed", "colors-changed", "layers", "suggestions", "corrections"]) on(event, render);
  render();
}

const swatch = (color) => el("span", { class: "swatch", style: `background:${color}` });

function render() {
  if (!body) return;
  const rows = [el("p", { class: "legend-title" }, "Classes")];
  rows.push(el("ul", { class: "legend-classes" }, state.classes.map((c) => el("li", {}, swatch(c.color), c.name))));
  if (isOn("uncertainty")) {
    rows.push(el("p", { class: "legend-title" }, "Uncertainty"),
      el("div", { class: "legend-scale" }, el("span", {}, "sure"), el("span", { class: "uncertainty-ramp" }), el("span", {}, "unsure")));
  }
  const marks = [
    [el("span", { class: "mark-dot" }), "correction (class colour; a dot is a single click)"],
    [el("span", { class: "mark-ring" }), "suggested point to label next", () => isOn("suggestions")],
    [el("span", { class: "mark-square" }), "last predicted square"],
    [el("span", { class: "mark-area" }), "export area"],
  ];
  rows.push(el("p", { class: "legend-title" }, "Marks"),
    el("ul", { class: "legend-marks" }, marks.filter(([, , when]) => !when || when()).map(([icon, text]) => el("li", {}, icon, text))));
  body.replaceChildren(...rows);
}
