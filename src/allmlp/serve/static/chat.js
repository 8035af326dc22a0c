// The chat page: each message is continued by the model; the answer streams in as server-sent events over fetch.
"use strict";

const run = runFromPath("chat");
let current = null;  // {id, controller} of the answer streaming now

function settings() {
  const number = id => document.getElementById(id).value.trim();
  const topK = parseInt(number("top_k") || "0", 10), topP = parseFloat(number("top_p") || "1");
  return {
    temperature: parseFloat(number("temperature") || "1"),
    top_k: topK > 0 ? topK : null,
    top_p: topP > 0 && topP < 1 ? topP : null,
    max_new_tokens: parseInt(number("length") || "0", 10),
    seed: number("seed") === "" ? null : parseInt(number("seed"), 10),
  };
}

function addTurn(who, text) {
  const turn = document.createElement("div");
  turn.className = `turn ${who}`;
  turn.innerHTML = `<div class="who">${who === "user" ? "you" : escapeHtml(run)}</div><pre></pre>` +
                   `<div class="status"></div>`;
  turn.querySelector("pre").textContent = text;
  document.getElementById("conversation").append(turn);
  return turn;
}

function scrollDown() {
  const box = document.getElementById("conversation");
  box.scrollTop = box.scrollHeight;
}

/** Read server-sent events from a fetch response, calling handle(event, data) for each. */
async function readEvents(response, handle) {
  const reader = response.body.getReader(), decoder = new TextDecoder();
  let buffer = "";
  while (true) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, {stream: true});
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = (block.match(/^event: (.*)$/m) || [])[1] || "message";
      const data = (block.match(/^data: (.*)$/m) || [])[1];
      handle(event, data ? JSON.parse(data) : {});
    }
  }
}

function busy(on) {
  document.getElementById("send").disabled = on;
  document.getElementById("stop").disabled = !on;
}

async function send(prompt) {
  addTurn("user", prompt || "(empty: a fresh line)");
  const turn = addTurn("model", ""), pre = turn.querySelector("pre"), status = turn.querySelector(".status");
  status.textContent = "generating…";
  const controller = new AbortController();
  current = {id: null, controller};
  busy(true);
  try {
    const response = await fetch(`/api/runs/${runUrl(run)}/generate`, {
      method: "POST", headers: {"Content-Type": "application/json"}, signal: controller.signal,
      body: JSON.stringify({prompt, ...settings()}),
    });
    if (!response.ok) await readJson(response);  // throws with the server's message
    await readEvents(response, (event, data) => {
      if (event === "start") {
        current.id = data.id;
        if (data.note) {
          const note = document.createElement("p");
          note.className = "note small";
          note.textContent = data.note;
          turn.insertBefore(note, pre);
        }
      } else if (event === "text") {
        pre.textContent += data.text;
        scrollDown();
      } else if (event === "done") {
        status.textContent = data.stopped ? `[stopped after ${data.chars} chars]`
                                          : `${data.chars} chars in ${data.seconds.toFixed(2)} s`;
      } else if (event === "error") {
        status.innerHTML = `<span class="error">${escapeHtml(data.error)}</span>`;
      }
    });
  } catch (err) {
    if (err.name === "AbortError") status.textContent = `[stopped after ${pre.textContent.length} chars]`;
    else { status.innerHTML = ""; const box = document.createElement("p"); box.className = "error";
           box.textContent = err.message; turn.replaceChild(box, pre); }
  } finally {
    current = null;
    busy(false);
    scrollDown();
  }
}

async function stop() {
  if (!current) return;
  const {id, controller} = current;
  if (id) {
    try { await api(`/api/generations/${id}/stop`, {method: "POST"}); } catch (err) { /* it may have ended */ }
  }
  controller.abort();
}

async function describe() {
  document.getElementById("run").textContent = run;
  try {
    const info = await api(`/api/runs/${runUrl(run)}`);
    const lm = info.language_model;
    if (!lm) throw new Error(`${run} is not a character language model run`);
    document.getElementById("about").textContent = `${info.model} (${lm.lm_kind}, context ${lm.context_length} ` +
      `chars, ${lm.chars.length} characters known; unknown characters in a prompt: ${lm.unknown_chars}); ` +
      `at most ${lm.max_new_tokens} chars per answer`;
  } catch (err) {
    showError(document.getElementById("error"), err.message);
  }
}

document.getElementById("composer").addEventListener("submit", event => {
  event.preventDefault();
  if (current) return;
  const box = document.getElementById("prompt"), prompt = box.value;
  box.value = "";
  send(prompt);
});
document.getElementById("prompt").addEventListener("keydown", event => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    document.getElementById("composer").requestSubmit();
  }
});
document.getElementById("stop").addEventListener("click", stop);
describe();
