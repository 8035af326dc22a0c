// The runs page: every run under RUNS_DIR, sorted and filtered here, refreshed every few seconds without a reload.
"use strict";

const REFRESH_MS = 3000;
const SHOWN_METRICS = ["val/loss", "val/acc", "val/bpc", "test/loss", "test/acc", "test/bpc", "train/loss"];
let runs = [];
let sortKey = "name", sortUp = true;

function metricsText(metrics) {
  const shown = SHOWN_METRICS.filter(k => metrics && k in metrics).slice(0, 3);
  return shown.map(k => `${k} ${formatNumber(metrics[k])}`).join("<br>") || '<span class="muted">–</span>';
}

function statusHtml(run) {
  const status = run.status || {};
  if (!status.running) return `<span class="badge">${run.has_weights ? "finished" : "no weights yet"}</span>`;
  const parts = [`step ${formatNumber(status.step)}` + (run.max_steps ? ` / ${formatNumber(run.max_steps)}` : "")];
  if (status.loss !== null && status.loss !== undefined) parts.push(`loss ${formatNumber(status.loss)}`);
  if (status.time_left_s !== null && status.time_left_s !== undefined) parts.push(`${formatSeconds(status.time_left_s)} left`);
  return `<span class="badge running">running</span> <span class="small">${parts.join(" · ")}</span>`;
}

function linksHtml(run) {
  const url = runUrl(run.name), links = [];
  if (run.can_chat) links.push(`<a href="/chat/${url}">chat</a>`);
  if (run.can_classify) links.push(`<a href="/classify/${url}">classify</a>`);
  if (run.has_weights) links.push(`<a href="/report/${url}">report</a>`, `<a href="/figures/${url}">figures</a>`);
  return links.join("");
}

function rowHtml(run) {
  if (run.problem && !run.model) {
    return `<tr data-run="${escapeHtml(run.name)}"><td>${escapeHtml(run.name)}</td>` +
           `<td colspan="8" class="error">${escapeHtml(run.problem)}</td></tr>`;
  }
  const changed = new Date(run.last_change * 1000).toISOString().replace("T", " ").slice(0, 19);
  return `<tr data-run="${escapeHtml(run.name)}"><td><b>${escapeHtml(run.name)}</b></td>` +
    `<td>${escapeHtml(run.model)}</td><td>${escapeHtml(run.task)}</td>` +
    `<td class="num">${formatNumber(run.params)}</td><td class="num">${metricsText(run.metrics)}</td>` +
    `<td class="num">${formatNumber(run.step)}</td><td class="small">${changed} UTC</td>` +
    `<td class="status">${statusHtml(run)}</td><td class="links">${linksHtml(run)}</td></tr>`;
}

function render() {
  const filter = document.getElementById("filter").value.trim().toLowerCase();
  const shown = runs.filter(r => r.name.toLowerCase().includes(filter));
  shown.sort((a, b) => {
    const x = a[sortKey], y = b[sortKey];
    const order = typeof x === "number" && typeof y === "number" ? x - y : String(x ?? "").localeCompare(String(y ?? ""));
    return sortUp ? order : -order;
  });
  document.querySelector("#runs tbody").innerHTML = shown.map(rowHtml).join("");
  document.getElementById("count").textContent = `${shown.length} of ${runs.length} runs`;
  document.getElementById("empty").hidden = runs.length > 0;
  for (const th of document.querySelectorAll("th.sortable")) {
    th.textContent = th.textContent.replace(/ [▲▼]$/, "") + (th.dataset.key === sortKey ? (sortUp ? " ▲" : " ▼") : "");
  }
}

async function refresh() {
  try {
    const body = await api("/api/runs");
    runs = body.runs;
    document.getElementById("root").textContent = body.runs_dir;
    document.getElementById("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
    showError(document.getElementById("error"), "");
    render();
  } catch (err) {
    showError(document.getElementById("error"), `could not list the runs: ${err.message}`);
  }
}

for (const th of document.querySelectorAll("th.sortable")) {
  th.addEventListener("click", () => {
    sortUp = th.dataset.key === sortKey ? !sortUp : true;
    sortKey = th.dataset.key;
    render();
  });
}
document.getElementById("filter").addEventListener("input", render);
refresh();
setInterval(refresh, REFRESH_MS);
