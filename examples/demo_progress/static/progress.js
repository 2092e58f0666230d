// The progress demo's page: start a job, and watch every job's progress bar
// with Snorky's Progress service. Served with the client at /snorky.mjs.

import Snorky from "/snorky.mjs";

const $ = (selector) => document.querySelector(selector);

const snorky = new Snorky(WebSocket, "/ws", {
  progress: Snorky.Progress,
  pubsub: Snorky.PubSub,
  jobs: Snorky.RPCService,
});
const { progress, pubsub, jobs } = snorky.services;

/** Task id -> the job's announcement, in the order they started. */
const known = new Map();

snorky.stateChanged.add((state) => {
  document.body.dataset.state = state;
  $("#state").textContent = state;
});
document.body.dataset.state = snorky.state;
$("#state").textContent = snorky.state;

pubsub.messagePublished.add(({ channel, message }) => {
  if (channel === "jobs") follow(message);
});
progress.taskChanged.add((state) => draw(state.task));

// After a reconnection the client follows the tasks again by itself (the
// server sends each one's state anew); jobs announced during the gap are
// picked up by asking for the list again.
snorky.restored.add(() => loadJobs());

$("#start").addEventListener("submit", async (event) => {
  event.preventDefault();
  const job = await jobs.rpcCall("start", { name: $("#job-name").value, steps: Number($("#steps").value) });
  follow(job);
});

async function loadJobs() {
  for (const job of await jobs.rpcCall("listJobs")) follow(job);
}

function follow(job) {
  if (known.has(job.task)) return;
  known.set(job.task, job);
  progress.subscribe({ task: job.task }).catch(() => {});
  draw(job.task);
}

function draw(task) {
  const job = known.get(task);
  if (!job) return;
  let item = document.querySelector(`.job[data-task="${CSS.escape(task)}"]`);
  if (!item) {
    item = document.createElement("li");
    item.className = "job";
    item.dataset.task = task;
    item.innerHTML = `<div class="title"><span class="name"></span><span class="who"></span></div>
      <div class="bar" role="progressbar" aria-valuemin="0"><div class="fill"></div></div>
      <div class="label"><span class="text"></span><span class="percent"></span></div>`;
    item.querySelector(".name").textContent = job.name;
    item.querySelector(".who").textContent = `started ${new Date(job.startedAt * 1000).toLocaleTimeString()}`;
    $("#jobs").prepend(item);
    $("#empty").hidden = true;
  }
  const state = progress.getTask(task) ?? { min: 0, max: 1, value: 0, status: "running" };
  const span = state.max - state.min || 1;
  const percent = Math.round((100 * (state.value - state.min)) / span);
  item.dataset.status = state.status ?? "running";
  item.dataset.percent = String(percent);
  item.querySelector(".fill").style.width = `${percent}%`;
  item.querySelector(".bar").setAttribute("aria-valuenow", String(percent));
  item.querySelector(".text").textContent = state.error ?? state.label ?? "Waiting…";
  item.querySelector(".percent").textContent = `${percent}%`;
}

pubsub.subscribe({ channel: "jobs" }).then(loadJobs);
