// The inbox page: recent items over REST, then the live WebSocket (/ws/notifications).
// The API key stays in this page's memory; the socket is opened with a short-lived token.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { user: "", key: "", socket: null, items: new Map(), cursor: null, retry: 0, timer: null };

function setStatus(text, kind) {
  const status = $("status");
  status.textContent = text;
  status.className = "status " + (kind || "off");
}

function setUnread(count) {
  const badge = $("unread-count");
  badge.textContent = String(count);
  badge.hidden = count === 0;
  document.title = (count ? `(${count}) ` : "") + "Inbox · notification-service";
}

async function api(method, path) {
  const response = await fetch(path, { method, headers: { Authorization: `Bearer ${state.key}` } });
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) throw new Error(body && body.error ? body.error.message : response.statusText);
  return body;
}

function render(item, fresh) {
  let node = state.items.get(item.id);
  if (!node) {
    node = $("item-template").content.firstElementChild.cloneNode(true);
    node.dataset.id = item.id;
    node.querySelector(".mark-read").addEventListener("click", () => markRead([item.id]));
    if (fresh) node.classList.add("fresh");
    state.items.set(item.id, node);
    const list = $("items");
    node.dataset.position = String(position(item.cursor));
    const older = [...list.children].find((other) => Number(other.dataset.position) < position(item.cursor));
    list.insertBefore(node, older || null);
  }
  node.querySelector(".category").textContent = item.category;
  node.querySelector("time").textContent = new Date(item.createdAt).toLocaleString();
  node.querySelector("time").dateTime = item.createdAt;
  node.querySelector(".title").textContent = item.title || "";
  node.querySelector(".body").textContent = item.body;
  const data = node.querySelector(".data");
  data.hidden = !item.data;
  data.textContent = item.data ? JSON.stringify(item.data, null, 2) : "";
  node.classList.toggle("unread", !item.readAt);
  $("empty").hidden = state.items.size > 0;
}

function markRead(ids) {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify({ type: "read", ids }));
  }
}

function onEvent(event) {
  switch (event.type) {
    case "item":
      render(event.item, true);
      if (!state.cursor || positionAfter(event.item.cursor, state.cursor)) state.cursor = event.item.cursor;
      setUnread(event.unreadCount);
      break;
    case "ready":
      if (event.cursor) state.cursor = event.cursor;
      setUnread(event.unreadCount);
      setStatus("live", "live");
      state.retry = 0;
      break;
    case "read":
      for (const id of event.ids) state.items.get(id)?.classList.remove("unread");
      setUnread(event.unreadCount);
      break;
    case "deleted":
      for (const id of event.ids) {
        state.items.get(id)?.remove();
        state.items.delete(id);
      }
      $("empty").hidden = state.items.size > 0;
      setUnread(event.unreadCount);
      break;
    case "error":
      console.warn("server refused a message:", event);
      break;
  }
}

// Cursors are base64url of "inbox:<position>"; positions grow.
function position(cursor) { return Number(atob(cursor.replace(/-/g, "+").replace(/_/g, "/")).split(":")[1]); }
function positionAfter(a, b) { return position(a) > position(b); }

async function connect() {
  clearTimeout(state.timer);
  setStatus("connecting…");
  let token;
  try {
    token = await api("POST", `/api/v1/users/${encodeURIComponent(state.user)}/ws-token`);
  } catch (error) {
    setStatus(`token refused: ${error.message}`, "bad");
    return;
  }
  const url = new URL(token.url, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(url);
  state.socket = socket;
  socket.onopen = () => socket.send(JSON.stringify({ type: "auth", token: token.token, cursor: state.cursor }));
  socket.onmessage = (message) => onEvent(JSON.parse(message.data));
  socket.onclose = (closed) => {
    if (state.socket !== socket) return;
    $("mark-all-read").disabled = true;
    setStatus(`disconnected (${closed.code}${closed.reason ? ": " + closed.reason : ""}); retrying`, "bad");
    const delay = Math.min(30000, 500 * 2 ** state.retry++);
    state.timer = setTimeout(connect, delay);
  };
  $("mark-all-read").disabled = false;
}

async function start(user, key) {
  if (state.socket) { const old = state.socket; state.socket = null; old.close(1000); }
  Object.assign(state, { user, key, cursor: null, retry: 0 });
  state.items.clear();
  $("items").replaceChildren();
  $("who").textContent = `user ${user}`;
  try {
    const page = await api("GET", `/api/v1/users/${encodeURIComponent(user)}/inbox?limit=50`);
    for (const item of page.items.reverse()) render(item, false);
    if (page.items.length) state.cursor = page.items[page.items.length - 1].cursor;
    setUnread(page.unreadCount);
  } catch (error) {
    setStatus(`inbox refused: ${error.message}`, "bad");
    return;
  }
  connect();
}

$("connect").addEventListener("submit", (submit) => {
  submit.preventDefault();
  start($("user-id").value.trim(), $("api-key").value.trim());
});
$("mark-all-read").addEventListener("click", () => {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send('{"type":"read-all"}');
});

// `notification-service dev` prints /inbox#user=…&key=…: the fragment never leaves the browser,
// and is removed from the address bar at once.
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("user") && fragment.get("key")) {
  $("user-id").value = fragment.get("user");
  $("api-key").value = fragment.get("key");
  history.replaceState(null, "", location.pathname);
  start(fragment.get("user"), fragment.get("key"));
}
