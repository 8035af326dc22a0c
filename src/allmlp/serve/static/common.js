// Shared by the pages of allmlp serve: the run named in the address, API calls with one-line errors, escaping.
"use strict";

/** The run name of a page at /PAGE/RUN (RUN may hold slashes; each part percent-decoded). */
function runFromPath(page) {
  const rest = location.pathname.slice(page.length + 2);
  return rest.split("/").map(decodeURIComponent).join("/");
}

/** A run name as it goes into a URL path: each part percent-encoded, slashes kept. */
function runUrl(run) {
  return run.split("/").map(encodeURIComponent).join("/");
}

/** GET or POST JSON; throws an Error carrying the server's one-line message for a 4xx/5xx answer. */
async function api(path, options = {}) {
  const response = await fetch(path, options);
  return readJson(response);
}

async function readJson(response) {
  let body = null;
  try { body = await response.json(); } catch (err) { body = null; }
  if (!response.ok) {
    throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  }
  return body;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                                                  "'": "&#39;"}[c]));
}

function showError(element, message) {
  element.textContent = message;
  element.hidden = !message;
}

function formatNumber(value) {
  if (value === null || value === undefined) return "–";
  if (Number.isInteger(value)) return value.toLocaleString("en-US");
  return Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(4);
}

function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}
