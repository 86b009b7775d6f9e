// The servers the page asks for predictions: every click is sent to each of them, and their
// answers are shown side by side. The first one also serves the dataset list and the imagery.
//
// To change this list without touching the repository, copy this file to endpoints.mine.js
// (git-ignored); the page loads that one instead when it exists. A `url` is relative to the
// page ("./" = the server that serves the page) or absolute ("http://host:4444/").
export const ENDPOINTS = [{ name: "This server", url: "./" }];

export default ENDPOINTS;
