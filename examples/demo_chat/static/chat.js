// The chat demo's page: Snorky's Chat service for rooms, members and messages,
// PubSub for read receipts. Served with the client at /snorky.mjs.

import Snorky from "/snorky.mjs";

const ROOMS = ["lobby", "random", "help"];

const $ = (selector) => document.querySelector(selector);
const element = (tag, className, text) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
};

const snorky = new Snorky(WebSocket, "/ws", { chat: Snorky.Chat, pubsub: Snorky.PubSub });
const { chat, pubsub } = snorky.services;

/** Room -> {messages, unread, receipts: Map(identity -> timestamp read up to)}. */
const rooms = new Map(ROOMS.map((room) => [room, { messages: [], unread: 0, receipts: new Map() }]));
let me = null;
let current = ROOMS[0];
const sentReceipts = new Map();

// Connection state, shown in the header (and as body[data-state] for the tests).
snorky.stateChanged.add((state) => {
  document.body.dataset.state = state;
  $("#state").textContent = state;
});
document.body.dataset.state = snorky.state;
$("#state").textContent = snorky.state;
snorky.restored.add(() => {
  document.body.dataset.restored = String(Number(document.body.dataset.restored || 0) + 1);
});

$("#signin").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("#signin-error");
  error.hidden = true;
  try {
    await signIn($("#name").value.trim());
  } catch (failure) {
    error.textContent = failure.message;
    error.hidden = false;
  }
});

async function signIn(name) {
  const token = await snorky.call("login", "signIn", { name });
  const answer = await snorky.authenticate(token);
  me = answer.identity;
  $("#whoami").textContent = `Signed in as ${answer.info.name}`;
  $("#signin").hidden = true;
  $("#chat").hidden = false;
  for (const room of ROOMS) {
    const joined = await chat.join({ channel: room });
    addHistory(room, joined.history ?? []);
    await pubsub.subscribe({ channel: `receipts:${room}` });
  }
  show(ROOMS[0]);
  $("#text").focus();
}

// After a reconnection the client joins the rooms again by itself; the answer
// brings the members and the server's recent history, which may hold messages
// this page missed.
chat.restored.add(({ channel, answer }) => {
  if (answer) addHistory(channel, answer.history ?? []);
});

chat.messageReceived.add((message) => {
  const room = rooms.get(message.channel);
  if (!room || !addMessage(room, message)) return;
  if (message.channel === current && document.visibilityState === "visible") {
    markRead(message.channel);
  } else if (message.from !== me) {
    room.unread++;
  }
  render();
});

// Another tab of mine read a room: its badge goes in every tab.
chat.readReceived.add(({ channel }) => {
  const room = rooms.get(channel);
  if (room) {
    room.unread = 0;
    renderRooms();
  }
});

chat.membersChanged.add((channel) => {
  if (channel === current) renderMembers();
});

pubsub.messagePublished.add(({ channel, message }) => {
  const room = rooms.get(String(channel).replace(/^receipts:/, ""));
  if (room && message && typeof message.who === "string" && message.who !== me) {
    room.receipts.set(message.who, message.upTo);
    renderReceipt();
  }
});

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && me) markRead(current);
});

$("#composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("#text").value.trim();
  if (!text) return;
  $("#text").value = "";
  await chat.send({ channel: current, body: text });
});

function addHistory(room, history) {
  const entry = rooms.get(room);
  let added = false;
  for (const message of history) added = addMessage(entry, message) || added;
  if (added) render();
}

/** Add a message unless the room has it already (history overlaps what the page saw). */
function addMessage(room, message) {
  const key = (m) => `${m.timestamp}|${m.from}|${JSON.stringify(m.body)}`;
  if (room.messages.some((m) => key(m) === key(message))) return false;
  room.messages.push(message);
  room.messages.sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0));
  return true;
}

function show(room) {
  current = room;
  markRead(room);
  render();
}

/** Clear the badge here and in my other tabs, and tell the others how far I read. */
function markRead(roomName) {
  const room = rooms.get(roomName);
  room.unread = 0;
  const last = room.messages[room.messages.length - 1];
  if (!last) return;
  chat.read({ channel: roomName }).catch(() => {});
  if ((sentReceipts.get(roomName) ?? "") < last.timestamp) {
    sentReceipts.set(roomName, last.timestamp);
    pubsub.publish({ channel: `receipts:${roomName}`, message: { who: me, upTo: last.timestamp } }).catch(() => {});
  }
}

function render() {
  renderRooms();
  renderMessages();
  renderMembers();
  renderReceipt();
}

function renderRooms() {
  const list = $("#rooms");
  list.replaceChildren(
    ...ROOMS.map((name) => {
      const item = element("li", `room${name === current ? " current" : ""}`);
      item.dataset.room = name;
      item.append(element("span", "", `# ${name}`), element("span", "badge", rooms.get(name).unread || ""));
      item.addEventListener("click", () => show(name));
      return item;
    }),
  );
}

function renderMessages() {
  $("#room-title").textContent = `# ${current}`;
  const list = $("#messages");
  list.replaceChildren(
    ...rooms.get(current).messages.map((message) => {
      const item = element("li", "message");
      const from = element("span", "from", message.from);
      const member = chat.getMembers(current).find((m) => m.identity === message.from);
      if (member?.info?.color) from.style.color = member.info.color;
      const time = element("time", "", new Date(message.timestamp).toLocaleTimeString());
      item.append(from, element("span", "body", String(message.body)), time);
      return item;
    }),
  );
  list.scrollTop = list.scrollHeight;
}

function renderMembers() {
  $("#members").replaceChildren(
    ...chat.getMembers(current).map(({ identity, info }) => {
      const item = element("li", `member${identity === me ? " me" : ""}`);
      item.dataset.identity = identity;
      const dot = element("span", "dot");
      if (info?.color) dot.style.background = info.color;
      item.append(dot, element("span", "", info?.name ?? identity));
      return item;
    }),
  );
}

function renderReceipt() {
  const room = rooms.get(current);
  const last = room.messages[room.messages.length - 1];
  const readers = last
    ? [...room.receipts].filter(([who, upTo]) => who !== last.from && upTo >= last.timestamp).map(([who]) => who)
    : [];
  $("#receipt").textContent = readers.length ? `Seen by ${readers.sort().join(", ")}` : "";
}
