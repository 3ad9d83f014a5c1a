// The operator console: search the project's notifications, open one, cancel it, retry a
// delivery. The API key stays in this page's memory; every call sends it as a bearer token.
"use strict";

const $ = (selector) => document.querySelector(selector);
let key = "";
let cursor = null;
let lastQuery = null;
let opened = null;

async function call(method, path) {
  const response = await fetch(path, { method, headers: { Authorization: `Bearer ${key}` } });
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) {
    const fields = (body.error.fields || []).map((f) => `${f.field}: ${f.message}`).join("; ");
    throw new Error(`${body.error.code}: ${body.error.message}${fields ? ` (${fields})` : ""}`);
  }
  return body;
}

function say(text) {
  $("#message").textContent = text;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

async function refreshStrip() {
  try {
    const summary = await call("GET", "/api/v1/console/summary");
    $("#lag").textContent = `${summary.outboxLagSeconds.toFixed(1)} s`;
    $("#depths").textContent = Object.entries(summary.queueDepths)
      .map(([queue, depth]) => `${queue} ${depth === null ? "?" : depth}`)
      .join(" · ");
    $("#sent").textContent = summary.lastMinute.sent;
    $("#failed").textContent = summary.lastMinute.failed;
    $("#strip").hidden = false;
  } catch (error) {
    say(error.message);
  }
}

function queryOf(form) {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(form)) {
    if (!value) continue;
    // datetime-local has no zone: the operator means their own.
    params.set(name, name.startsWith("created_") ? new Date(value).toISOString() : value.trim());
  }
  return params;
}

async function search(more, quiet = false) {
  const params = new URLSearchParams(lastQuery);
  if (more && cursor) params.set("cursor", cursor);
  try {
    const page = await call("GET", `/api/v1/console/notifications?${params}`);
    const body = $("#results tbody");
    if (!more) body.replaceChildren();
    for (const n of page.items) {
      const row = body.insertRow();
      row.className = "result";
      row.dataset.id = n.id;
      cell(row, when(n.createdAt));
      cell(row, n.id).className = "id";
      cell(row, n.type);
      cell(row, n.status, `status ${n.status}`);
      cell(row, n.deliveries.map((d) => `${d.channel} ${d.status}`).join(", "));
      row.addEventListener("click", () => open(n.id));
    }
    cursor = page.nextCursor;
    $("#more").hidden = !cursor;
    $("#results").hidden = false;
    if (!quiet) say(body.rows.length ? "" : "Nothing found.");
  } catch (error) {
    say(error.message);
  }
}

function show(history) {
  const n = history.notification;
  opened = n.id;
  $("#detail-id").textContent = n.id;
  $("#detail-status").textContent = n.status;
  $("#detail-status").className = `status ${n.status}`;
  $("#cancel").disabled = !n.deliveries.some((d) => ["PENDING", "QUEUED", "RETRYING"].includes(d.status));
  const content = $("#content");
  content.replaceChildren();
  for (const [name, value] of Object.entries(history.content)) {
    if (value === null) continue;
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = typeof value === "object" ? JSON.stringify(value) : value;
    content.append(dt, dd);
  }
  const deliveries = $("#deliveries tbody");
  deliveries.replaceChildren();
  for (const d of n.deliveries) {
    const row = deliveries.insertRow();
    row.dataset.channel = d.channel;
    cell(row, d.channel);
    cell(row, d.status, `status ${d.status}`);
    cell(row, d.attempts);
    cell(row, [d.errorCode, d.lastError].filter(Boolean).join(": "));
    cell(row, d.providerMessageId);
    cell(row, when(d.updatedAt));
    const actions = row.insertCell();
    if (d.status === "FAILED" || d.status === "RETRYING") {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "retry";
      button.textContent = "Retry now";
      button.addEventListener("click", () => retry(d.id));
      actions.append(button);
    }
  }
  const timeline = $("#timeline tbody");
  timeline.replaceChildren();
  for (const change of history.timeline) {
    const row = timeline.insertRow();
    cell(row, when(change.at));
    cell(row, change.channel);
    cell(row, `${change.fromStatus} → ${change.toStatus}`);
    cell(row, change.attempt);
    cell(row, [change.errorCode, change.error].filter(Boolean).join(": "));
  }
  $("#detail").hidden = false;
}

async function open(id) {
  try {
    show(await call("GET", `/api/v1/console/notifications/${encodeURIComponent(id)}`));
    say("");
  } catch (error) {
    say(error.message);
  }
}

async function retry(deliveryId) {
  try {
    show(await call("POST", `/api/v1/console/deliveries/${encodeURIComponent(deliveryId)}/retry`));
    say("Re-queued.");
    refreshStrip();
    if (lastQuery !== null) search(false, true); // the list shows the change too
  } catch (error) {
    say(error.message);
  }
}

$("#cancel").addEventListener("click", async () => {
  try {
    const result = await call("POST", `/api/v1/notifications/${encodeURIComponent(opened)}/cancel`);
    await open(opened);
    if (lastQuery !== null) search(false, true); // the list shows the change too
    say(`Cancelled ${result.cancelled} deliver${result.cancelled === 1 ? "y" : "ies"}.`);
  } catch (error) {
    say(error.message);
  }
});

$("#connect").addEventListener("submit", async (event) => {
  event.preventDefault();
  key = $("#api-key").value.trim();
  $("#api-key").value = "";
  $("#connect").hidden = true;
  $("main").hidden = false;
  await refreshStrip();
  setInterval(refreshStrip, 5000);
});

$("#search").addEventListener("submit", (event) => {
  event.preventDefault();
  lastQuery = queryOf(event.target).toString();
  search(false);
});

$("#more").addEventListener("click", () => search(true));
