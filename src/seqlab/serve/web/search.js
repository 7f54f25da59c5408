// The search box: shown when the server has an index (GET /v1/index), answered by POST /v1/search.
// Uses api() and $ from app.js (loaded first).
"use strict";

api("/v1/index").then((r) => (r.ok ? r.json() : null)).then((info) => {
  if (!info) return;
  $("tab-search").hidden = false;
  $("search-summary").textContent = `${info.count} ${info.unit}s in ${info.files} file(s)`;
}).catch(() => {});

async function search(event) {
  event.preventDefault();
  $("search-results").replaceChildren();
  $("search-summary").className = "muted";
  $("search-summary").textContent = "searching…";
  try {
    const response = await api("/v1/search", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ query: $("search-query").value, k: Number($("search-k").value) || 10 }),
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    const result = await response.json();
    for (const hit of result.results) {
      const li = document.createElement("li");
      const where = document.createElement("code");
      where.textContent = `${hit.file}:${hit.line}`;
      const text = document.createElement("pre");
      text.textContent = hit.text;
      li.append(where, ` ${hit.score.toFixed(3)}`, text);
      $("search-results").appendChild(li);
    }
    $("search-summary").textContent = `${result.results.length} passages`;
  } catch (err) {
    $("search-summary").textContent = err.message;
    $("search-summary").className = "error";
  }
}

$("search-form").addEventListener("submit", search);
