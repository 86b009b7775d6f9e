// Leaflet and its drawing plugin (Leaflet-Geoman) as the page loads them: both are pinned npm
// packages served from /vendor/ by classic <script> tags in index.html, because Geoman extends
// the global `L`. Modules import `L` from here.
export const L = window.L;
export default L;
