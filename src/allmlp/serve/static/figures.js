// The figures page: every figure `allmlp viz` draws for the run, rendered by the server on demand.
"use strict";
const run = runFromPath("figures");
document.getElementById("run").textContent = run;
api(`/api/runs/${runUrl(run)}/figures`).then(body => {
  document.getElementById("note").textContent = `${body.figures.length} figures, as allmlp viz draws them`;
  document.getElementById("figures").innerHTML = body.figures.map(f =>
    `<figure><img src="${f.url}" alt="${f.name}"><figcaption>${f.name.replace(/_/g, " ")}</figcaption></figure>`).join("");
}).catch(err => showError(document.getElementById("error"), err.message));
