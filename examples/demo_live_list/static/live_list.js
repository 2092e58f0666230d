// The live list demo's page: the items come from the demo's `list` service,
// and every change arrives as a DataSync delta, applied to the array with a
// CollectionDeltaProcessor. Served with the client at /snorky.mjs.

import Snorky from "/snorky.mjs";

const $ = (selector) => document.querySelector(selector);

const snorky = new Snorky(WebSocket, "/ws", { datasync: Snorky.DataSync, list: Snorky.RPCService });
const { datasync, list } = snorky.services;

const items = [];
const processor = new Snorky.DataSync.CollectionDeltaProcessor({
  Item: new Snorky.DataSync.ArrayCollection(items),
});

snorky.stateChanged.add((state) => {
  document.body.dataset.state = state;
  $("#state").textContent = state;
});
document.body.dataset.state = snorky.state;
$("#state").textContent = snorky.state;

/**
 * The subscription's getToken: one call gets a fresh token and the items as
 * they are now. The client calls it again after a reconnection, which reloads
 * the list (deltas sent while the page was away are lost).
 */
async function snapshot() {
  const { token, items: rows } = await list.rpcCall("snapshot");
  items.splice(0, items.length, ...rows);
  render();
  return token;
}

datasync.deltaReceived.add((delta) => {
  processor.processDelta(delta);
  render();
});
datasync.restored.add(({ error }) => {
  document.body.dataset.restored = error ? "failed" : String(Number(document.body.dataset.restored || 0) + 1);
});

$("#add").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("#text").value.trim();
  if (!text) return;
  $("#text").value = "";
  await list.rpcCall("add", { text });
});

function render() {
  $("#empty").hidden = items.length > 0;
  const rendered = new Map([...document.querySelectorAll(".item")].map((node) => [node.dataset.id, node]));
  const nodes = items.map((item) => {
    let node = rendered.get(String(item.id));
    if (!node) {
      node = document.createElement("li");
      node.className = "item";
      node.dataset.id = String(item.id);
      node.innerHTML = `<input type="checkbox" class="tick"><span class="text"></span>
        <button class="remove" title="Remove">×</button>`;
      node.querySelector(".tick").addEventListener("change", (event) =>
        list.rpcCall("setDone", { id: item.id, done: event.target.checked }),
      );
      node.querySelector(".remove").addEventListener("click", () => list.rpcCall("remove", { id: item.id }));
    }
    node.classList.toggle("done", item.done);
    node.querySelector(".tick").checked = item.done;
    node.querySelector(".text").textContent = item.text;
    return node;
  });
  $("#items").replaceChildren(...nodes);
}

datasync.subscribe({ getToken: snapshot }).catch((error) => console.error(error));
