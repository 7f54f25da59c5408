// seqlab's page: streaming generation over /v1/completions (SSE) and a surprisal heat map over /v1/score.
"use strict";
const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "seqlab-token";  // kept for this tab only (sessionStorage), sent as Authorization: Bearer
let controller = null;
let tokenAsked = null;  // the one pending ask, shared by every request that got 401 meanwhile

function askForToken(refused) {
  if (!tokenAsked) {
    tokenAsked = new Promise((resolve) => {
      $("token-label").textContent = refused ? "the token was refused; try again" : "this server needs its token";
      $("token").value = "";
      $("auth").hidden = false;
      $("token").focus();
      $("auth").addEventListener("submit", (e) => {
        e.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, $("token").value);
        $("auth").hidden = true;
        tokenAsked = null;
        resolve();
      }, { once: true });
    });
  }
  return tokenAsked;
}

// fetch with the stored token; a 401 asks for the token (once, for all requests waiting) and tries again
async function api(path, options = {}) {
  for (;;) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = { ...options.headers };
    if (token !== null) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401) return response;
    await askForToken(token !== null);
  }
}

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
    for (const p of document.querySelectorAll(".panel")) p.hidden = p.id !== "panel-" + tab.dataset.tab;
  });
}

api("/ready").then((r) => r.json()).then((j) => {
  $("model").textContent = j.status === "ready" ? `${j.model} (batching: ${j.batching})` : j.status;
}).catch(() => { $("model").textContent = "server unreachable"; });

function numberField(id) {
  const v = $(id).value.trim();
  return v === "" ? null : Number(v);
}

async function errorMessage(response) {
  try { return (await response.json()).error.message; } catch { return `HTTP ${response.status}`; }
}

function setState(state, text, isError = false) {
  $("output").dataset.state = state;
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
  $("generate").disabled = state === "streaming";
  $("stop").disabled = state !== "streaming";
}

async function generate() {
  const body = {
    prompt: $("prompt").value, stream: true, max_tokens: numberField("max_tokens") ?? 200,
    temperature: numberField("temperature") ?? 0.8, top_p: numberField("top_p") ?? 1, top_k: numberField("top_k") ?? 0,
  };
  const seed = numberField("seed");
  if (seed !== null) body.seed = seed;
  $("output-prompt").textContent = body.prompt;
  $("output-text").textContent = "";
  $("output").dataset.chunks = "0";
  setState("streaming", "generating…");
  controller = new AbortController();
  const started = performance.now();
  let tokens = 0, finish = null;
  try {
    const response = await api("/v1/completions", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {  // one server-sent event per blank-line-terminated block
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (!data || data === "[DONE]") continue;
        const msg = JSON.parse(data);
        if (msg.error) throw new Error(msg.error.message);
        for (const choice of msg.choices) {
          if (choice.text) {
            $("output-text").textContent += choice.text;
            tokens += 1;
            $("output").dataset.chunks = String(tokens);
          }
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      }
    }
    const secs = (performance.now() - started) / 1000;
    setState("done", `finished (${finish ?? "?"}) in ${secs.toFixed(2)} s`);
  } catch (err) {
    if (err.name === "AbortError") setState("done", "stopped");
    else setState("error", err.message, true);
  } finally {
    controller = null;
  }
}

function heat(bits) {
  const a = Math.min(1, bits / 12);  // 12 bits and more: full red
  return `rgba(220, 38, 38, ${a.toFixed(3)})`;
}

async function score() {
  $("score-summary").textContent = "scoring…";
  $("score-summary").className = "muted";
  $("heatmap").replaceChildren();
  $("anomalies").replaceChildren();
  try {
    const response = await api("/v1/score", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text: $("score-text").value, top: 10 }),
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    const result = await response.json();
    let carried = 0;  // bits of tokens that end inside a character, shown on the token that completes it
    for (const tok of result.tokens) {
      carried += tok.bits;
      if (!tok.text) continue;
      const span = document.createElement("span");
      span.textContent = tok.text;
      span.style.backgroundColor = heat(carried);
      span.title = `${carried.toFixed(2)} bits`;
      span.dataset.bits = carried.toFixed(3);
      $("heatmap").appendChild(span);
      carried = 0;
    }
    // spans from seqlab surprise's detector when the server has it, else the most surprising tokens
    const spans = result.anomalies ?? result.most_surprising;
    $("anomalies-title").textContent = result.anomalies ? "Anomalies" : "Most surprising tokens";
    for (const item of spans) {
      const li = document.createElement("li");
      const code = document.createElement("code");
      code.textContent = JSON.stringify(item.text);
      const where = item.line ? `line ${item.line}, column ${item.column}` : `byte ${item.start}`;
      li.append(code, ` at ${where}: ${item.bits.toFixed(2)} bits`);
      $("anomalies").appendChild(li);
    }
    $("score-summary").textContent =
      `${result.bits_per_byte.toFixed(3)} bits per byte over ${result.bytes} bytes (${result.tokens.length} tokens)`;
  } catch (err) {
    $("score-summary").textContent = err.message;
    $("score-summary").className = "error";
  }
}

$("generate").addEventListener("click", generate);
$("stop").addEventListener("click", () => controller && controller.abort());
$("score").addEventListener("click", score);
