// The classify page: upload (or pick a test image), show the model's input and its five likeliest classes.
"use strict";

const run = runFromPath("classify");
const INSIDE = ["token_mixing", "patch_projections"];

async function classify(blob, name) {
  const error = document.getElementById("error");
  showError(error, "");
  const form = new FormData();
  form.append("image", blob, name);
  try {
    const result = await api(`/api/runs/${runUrl(run)}/classify`, {method: "POST", body: form});
    const seen = document.getElementById("seen");
    seen.src = result.model_input.png;
    seen.hidden = false;
    const [c, h, w] = result.model_input.shape;
    document.getElementById("seen-note").textContent = `${name}: ${result.uploaded.width} × ` +
      `${result.uploaded.height} ${result.uploaded.mode} → ${c === 1 ? "grey" : "RGB"} ${w} × ${h}, normalised ` +
      `to ${result.model_input.min.toFixed(2)} … ${result.model_input.max.toFixed(2)} (shown enlarged)`;
    document.querySelector("#top tbody").innerHTML = result.top.map(t =>
      `<tr><td>${escapeHtml(t.label)}</td><td class="num probability">${(100 * t.probability).toFixed(1)}%</td>` +
      `<td><div class="bar"><span style="width:${(100 * t.probability).toFixed(1)}%"></span></div></td></tr>`).join("");
    const shown = result.top.reduce((sum, t) => sum + t.probability, 0);
    const others = Object.keys(result.probabilities).length - result.top.length;
    document.getElementById("rest").textContent = others > 0 ?
      `the other ${others} classes: ${(100 * (1 - shown)).toFixed(1)}%` : "";
  } catch (err) {
    showError(error, err.message);
  }
}

async function describe() {
  document.getElementById("run").textContent = run;
  try {
    const info = await api(`/api/runs/${runUrl(run)}`);
    const image = info.image_model;
    if (!image) throw new Error(`${run} is not an image classification run`);
    const [c, h, w] = image.input_shape;
    document.getElementById("about").textContent = `${info.model}: ${c === 1 ? "grey" : "RGB"} ${w} × ${h} ` +
      `images, ${image.classes.length} classes (${image.classes.join(", ")})`;
  } catch (err) {
    showError(document.getElementById("error"), err.message);
    return;
  }
  api(`/api/runs/${runUrl(run)}/test-images`).then(body => {
    document.getElementById("samples-note").textContent = body.note || "click one to classify it";
    document.getElementById("samples").innerHTML = body.images.map(image =>
      `<button type="button" data-url="${image.url}" data-label="${escapeHtml(image.label)}" ` +
      `title="${escapeHtml(image.label)}"><img src="${image.url}" alt="${escapeHtml(image.label)}"></button>`).join("");
    for (const button of document.querySelectorAll("#samples button")) {
      button.addEventListener("click", async () => {
        const blob = await (await fetch(button.dataset.url)).blob();
        classify(blob, `test image (${button.dataset.label})`);
      });
    }
  }).catch(err => { document.getElementById("samples-note").textContent = err.message; });
  api(`/api/runs/${runUrl(run)}/figures`).then(body => {
    const inside = body.figures.filter(f => INSIDE.includes(f.name));
    document.getElementById("figures").innerHTML = inside.map(f =>
      `<figure><img src="${f.url}" alt="${f.name}"><figcaption>${f.name.replace(/_/g, " ")}</figcaption></figure>`)
      .join("") || '<p class="muted small">this model has no token-mixing or patch figures</p>';
  }).catch(err => { document.getElementById("figures").textContent = err.message; });
}

const drop = document.getElementById("drop");
drop.addEventListener("dragover", event => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", event => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) classify(file, file.name);
});
document.getElementById("file").addEventListener("change", event => {
  const file = event.target.files[0];
  if (file) classify(file, file.name);
});
describe();
