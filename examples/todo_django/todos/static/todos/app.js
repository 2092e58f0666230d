// TodoMVC on Django REST framework, kept live by Snorky's DataSync.
//
// The page never adds a row it created itself: every change, its own included,
// arrives as a delta, so all open pages show the same list.

const app = document.querySelector("#todoapp");
const listId = app.dataset.list;
const apiUrl = `/api/lists/${listId}/todos/`;
const websocketUrl = app.dataset.websocket || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

const todos = new Map(); // id -> todo, as the API serializes it
let live = false;

// Realtime -------------------------------------------------------------------------
// A live query on Snorky's wire protocol with the browser's WebSocket: read the
// list with `X-Snorky: Subscribe`, then acquire the token it came with. Deltas
// made between the two are kept by Snorky until the page acquires it.

function liveQuery(url, { onRows, onDelta, onStatus }) {
  let retry = 500;

  async function start() {
    let token = null;
    try {
      const response = await fetch(url, { headers: { "X-Snorky": "Subscribe", Accept: "application/json" } });
      if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
      token = response.headers.get("X-Subscription-Token");
      onRows(await response.json());
    } catch (error) {
      console.warn(error);
    }
    if (!token) return later();
    const ws = new WebSocket(websocketUrl);
    ws.onopen = () => {
      const acquire = { command: "acquireSubscription", params: { token }, callId: 1 };
      ws.send(JSON.stringify({ service: "datasync", message: acquire }));
    };
    ws.onmessage = (event) => {
      const { service, message } = JSON.parse(event.data);
      if (service !== "datasync") return;
      if (message.type === "delta") onDelta(message.delta);
      else if (message.type === "response") { retry = 500; onStatus(true); }
      else if (message.type === "error") ws.close();
    };
    ws.onclose = () => { onStatus(false); later(); };
  }

  function later() {
    setTimeout(start, retry);
    retry = Math.min(retry * 2, 10000);
  }

  start();
}

function applyDelta(delta) {
  if (delta.type === "insert") todos.set(delta.data.id, delta.data);
  else if (delta.type === "update") todos.set(delta.newData.id, delta.newData);
  else if (delta.type === "delete") todos.delete(delta.data.id);
  render();
}

// API ------------------------------------------------------------------------------

async function api(method, url, body) {
  const response = await fetch(url, {
    method,
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${method} ${url}: HTTP ${response.status}`);
  if (!live) reload(); // no deltas without Snorky: read the list again
  return response.status === 204 ? null : response.json();
}

async function reload() {
  const response = await fetch(apiUrl, { headers: { Accept: "application/json" } });
  if (response.ok) {
    todos.clear();
    for (const todo of await response.json()) todos.set(todo.id, todo);
    render();
  }
}

// View -----------------------------------------------------------------------------

const $ = (selector) => document.querySelector(selector);

function visible(todo) {
  const filter = location.hash.replace(/^#\/?/, "");
  return filter === "active" ? !todo.completed : filter === "completed" ? todo.completed : true;
}

function render() {
  const all = [...todos.values()].sort((a, b) => a.created.localeCompare(b.created) || a.id - b.id);
  const remaining = all.filter((todo) => !todo.completed).length;
  const items = all.filter(visible).map((todo) => {
    const li = document.createElement("li");
    li.dataset.id = todo.id;
    li.classList.toggle("completed", todo.completed);
    const toggle = Object.assign(document.createElement("input"), { type: "checkbox", className: "toggle", checked: todo.completed });
    toggle.addEventListener("change", () => api("PATCH", `/api/todos/${todo.id}/`, { completed: toggle.checked }));
    const label = Object.assign(document.createElement("label"), { textContent: todo.title });
    label.addEventListener("dblclick", () => edit(li, todo));
    const destroy = Object.assign(document.createElement("button"), { className: "destroy", title: "Delete" });
    destroy.addEventListener("click", () => api("DELETE", `/api/todos/${todo.id}/`));
    li.append(toggle, label, destroy);
    return li;
  });
  $(".todo-list").replaceChildren(...items);
  $(".main").hidden = $(".footer").hidden = all.length === 0;
  $(".toggle-all").checked = all.length > 0 && remaining === 0;
  $(".todo-count").textContent = `${remaining} item${remaining === 1 ? "" : "s"} left`;
  $(".clear-completed").hidden = remaining === all.length;
  for (const link of document.querySelectorAll(".filters a")) {
    link.classList.toggle("selected", link.getAttribute("href") === (location.hash || "#/"));
  }
}

function edit(li, todo) {
  const input = Object.assign(document.createElement("input"), { className: "edit", value: todo.title });
  let done = false;
  const finish = (save) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    if (save && title && title !== todo.title) api("PATCH", `/api/todos/${todo.id}/`, { title });
    else if (save && !title) api("DELETE", `/api/todos/${todo.id}/`);
    render();
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") finish(true);
    else if (event.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
  li.classList.add("editing");
  li.append(input);
  input.focus();
}

$(".new-todo").addEventListener("keydown", (event) => {
  const title = event.target.value.trim();
  if (event.key !== "Enter" || !title) return;
  event.target.value = "";
  api("POST", apiUrl, { title });
});
$(".toggle-all").addEventListener("change", (event) =>
  api("POST", `/api/lists/${listId}/toggle-all/`, { completed: event.target.checked }),
);
$(".clear-completed").addEventListener("click", () => api("POST", `/api/lists/${listId}/clear-completed/`));
$(".new-list").addEventListener("click", async () => {
  const name = prompt("Name of the new list");
  if (name && name.trim()) location.href = `/lists/${(await api("POST", "/api/lists/", { name: name.trim() })).id}/`;
});
window.addEventListener("hashchange", render);

liveQuery(apiUrl, {
  onRows(rows) {
    todos.clear();
    for (const todo of rows) todos.set(todo.id, todo);
    render();
  },
  onDelta: applyDelta,
  onStatus(connected) {
    live = connected;
    const status = $(".status");
    status.dataset.status = connected ? "live" : "offline";
    status.textContent = connected ? "● live" : "○ offline: reconnecting…";
  },
});
