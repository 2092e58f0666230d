// The cursors demo's page: one cursor per person on a shared text area, with
// Snorky's Cursors service; the text itself goes through the demo's `text`
// service. Served with the client at /snorky.mjs.

import Snorky from "/snorky.mjs";

const DOCUMENT = "shared-text";

const $ = (selector) => document.querySelector(selector);

const snorky = new Snorky(WebSocket, "/ws", {
  cursors: Snorky.Cursors,
  text: Snorky.RPCService,
});
const { cursors, text } = snorky.services;
const textarea = $("#text");

let me = null;
let document_ = null;
let caret = null;
let textVersion = 0;
let editedHere = false;
let typingTimer = null;

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
  me = answer.info;
  $("#whoami").textContent = `Signed in as ${me.name}`;
  $("#signin").hidden = true;
  $("#editor").hidden = false;
  const loaded = await text.rpcCall("load");
  textVersion = loaded.version;
  textarea.value = loaded.text;
  document_ = await cursors.join({ document: DOCUMENT });
  for (const signal of [document_.cursorAdded, document_.cursorUpdated, document_.cursorRemoved]) {
    signal.add(render);
  }
  [caret] = document_.createCursor({ position: selection(), status: status(false) });
  textarea.focus();
  render();
}

// After a reconnection the client has joined the document again and created
// our caret again; the text service is the demo's own, so load it again. A
// fresh server (version 0) gets this page's text if it was edited here.
snorky.restored.add(async () => {
  if (!me) return;
  const loaded = await text.rpcCall("load");
  textVersion = -1; // The server may have started afresh, counting from 0 again.
  if (loaded.version === 0 && editedHere && loaded.text !== textarea.value) {
    textVersion = (await text.rpcCall("edit", { text: textarea.value })).version;
  } else {
    replaceText(loaded.text, loaded.version);
  }
  render();
});

text.notificationReceived.add((message) => {
  if (message.type === "text") {
    replaceText(message.text, message.version);
    render();
  }
});

textarea.addEventListener("input", () => {
  editedHere = true;
  text
    .rpcCall("edit", { text: textarea.value })
    .then((answer) => {
      textVersion = answer.version;
    })
    .catch(() => {});
  clearTimeout(typingTimer);
  typingTimer = setTimeout(() => moveCaret(false), 1500);
  moveCaret(true);
  render();
});
for (const type of ["keyup", "mouseup", "focus", "select"]) {
  textarea.addEventListener(type, () => moveCaret(caret?.status?.typing ?? false));
}
document.addEventListener("selectionchange", () => {
  if (document.activeElement === textarea) moveCaret(caret?.status?.typing ?? false);
});
textarea.addEventListener("scroll", render);
window.addEventListener("resize", render);

function selection() {
  return { start: textarea.selectionStart, end: textarea.selectionEnd };
}

function status(typing) {
  return { name: me.name, color: me.color, typing };
}

/** Send our caret where the selection is (only what changed goes out). */
function moveCaret(typing) {
  if (!caret || caret.removed) return;
  const position = selection();
  const newData = {};
  if (caret.position?.start !== position.start || caret.position?.end !== position.end) newData.position = position;
  if (caret.status?.typing !== typing) newData.status = status(typing);
  if (Object.keys(newData).length) caret.update(newData).catch(() => {});
}

/** Put someone else's text in, keeping our selection where it was in the text around it. */
function replaceText(value, version) {
  if (version < textVersion || value === textarea.value) return;
  textVersion = version;
  const old = textarea.value;
  let prefix = 0;
  while (prefix < old.length && prefix < value.length && old[prefix] === value[prefix]) prefix++;
  const shift = value.length - old.length;
  const adjust = (offset) => (offset <= prefix ? offset : Math.max(prefix, offset + shift));
  const { start, end } = selection();
  textarea.value = value;
  textarea.setSelectionRange(adjust(start), adjust(end));
}

/** Where a text offset is drawn, in the textarea's own coordinates (a hidden copy measures it). */
function caretPoint(offset) {
  const style = getComputedStyle(textarea);
  const mirror = document.createElement("div");
  for (const property of [
    "boxSizing", "width", "height", "paddingTop", "paddingRight", "paddingBottom", "paddingLeft",
    "borderTopWidth", "borderRightWidth", "borderBottomWidth", "borderLeftWidth", "borderStyle",
    "fontFamily", "fontSize", "fontWeight", "fontStyle", "lineHeight", "letterSpacing", "tabSize",
    "textTransform", "wordSpacing", "textIndent",
  ]) {
    mirror.style[property] = style[property];
  }
  Object.assign(mirror.style, {
    position: "absolute", visibility: "hidden", top: "0", left: "0",
    whiteSpace: "pre-wrap", overflowWrap: "break-word", overflow: "hidden",
  });
  mirror.textContent = textarea.value.slice(0, offset);
  const marker = document.createElement("span");
  marker.textContent = "\u200b";
  mirror.append(marker);
  textarea.parentElement.append(mirror);
  const point = {
    left: marker.offsetLeft - textarea.scrollLeft,
    top: marker.offsetTop - textarea.scrollTop,
    height: parseFloat(style.lineHeight) || marker.offsetHeight,
  };
  mirror.remove();
  return point;
}

function render() {
  if (!document_) return;
  const others = document_.foreignCursors();
  $("#overlay").replaceChildren(
    ...others.map((cursor) => {
      const offset = Math.min(cursor.position?.end ?? 0, textarea.value.length);
      const point = caretPoint(offset);
      const color = cursor.status?.color ?? "#495057";
      const mark = document.createElement("div");
      mark.className = `remote-cursor${cursor.status?.typing ? " typing" : ""}`;
      mark.dataset.owner = cursor.owner;
      mark.dataset.position = String(offset);
      Object.assign(mark.style, {
        left: `${point.left}px`, top: `${point.top}px`, height: `${point.height}px`, background: color,
      });
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = cursor.status?.name ?? cursor.owner;
      label.style.background = color;
      mark.append(label);
      return mark;
    }),
  );
  const people = [{ name: `${me.name} (you)`, color: me.color }].concat(
    others.map((c) => ({ name: c.status?.name ?? c.owner, color: c.status?.color ?? "#495057" })),
  );
  $("#people").replaceChildren(
    ...people.map(({ name, color }) => {
      const item = document.createElement("li");
      item.className = "person";
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = color;
      item.append(swatch, document.createTextNode(name));
      return item;
    }),
  );
}
