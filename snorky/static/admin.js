// Snorky admin page: signs in, then reads /admin/api/* every two seconds.
// Everything the server sends is shown with textContent, never as HTML.
"use strict";

(() => {
  const POLL_MS = 2000;
  const KEEP = 60; // samples in the chart: two minutes
  const $ = (id) => document.getElementById(id);

  const state = {
    timer: null,
    previous: null, // the last stats answer with totals, for the rates
    samples: [], // {in, out, deliveries} per second
    services: [],
    node: null,
    presence: null, // {service, channel} being shown
  };

  class SignedOut extends Error {}

  async function api(path, body) {
    const options = { credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      options.method = "POST";
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    if (response.status === 401 && path !== "/admin/api/login") {
      showLogin();
      throw new SignedOut("signed out");
    }
    if (!response.ok) {
      throw new Error((data && data.error) || `${response.status} ${response.statusText}`);
    }
    return data;
  }

  // Formatting ------------------------------------------------------------------

  const integer = new Intl.NumberFormat("en-US");
  function rate(value) {
    if (value === null || !Number.isFinite(value)) return "–";
    return value < 10 ? value.toFixed(1) : integer.format(Math.round(value));
  }
  function duration(seconds) {
    const s = Math.floor(seconds);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s % 60}s`;
    return `${s}s`;
  }
  const show = (value) => (typeof value === "string" ? value : JSON.stringify(value));
  function describeInfo(info) {
    if (info === null || info === undefined) return "";
    if (typeof info !== "object" || Array.isArray(info)) return show(info);
    return Object.entries(info)
      .map(([key, value]) => `${key}: ${show(value)}`)
      .join(", ");
  }
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function result(id, text, ok) {
    const node = $(id);
    node.textContent = text;
    node.className = `result ${ok ? "ok" : "bad"}`;
  }

  // Sign-in ---------------------------------------------------------------------

  function showLogin() {
    stop();
    $("app").hidden = true;
    $("login").hidden = false;
    $("password").focus();
  }

  function showApp() {
    $("login").hidden = true;
    $("app").hidden = false;
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    $("login-button").disabled = true;
    try {
      await api("/admin/api/login", { password: $("password").value });
      $("password").value = "";
      await start();
    } catch (error) {
      $("login-error").textContent = error.message === "wrong password" ? "Wrong password." : error.message;
    } finally {
      $("login-button").disabled = false;
    }
  });

  $("logout").addEventListener("click", async () => {
    await api("/admin/api/logout", {}).catch(() => null);
    showLogin();
  });

  // Polling ---------------------------------------------------------------------

  async function start() {
    stop();
    state.previous = null;
    state.samples = [];
    await refresh();
    showApp();
    state.timer = setInterval(() => refresh().catch(() => null), POLL_MS);
  }

  function stop() {
    if (state.timer !== null) clearInterval(state.timer);
    state.timer = null;
  }

  async function refresh() {
    const stats = await api("/admin/api/stats");
    renderStats(stats);
    await Promise.all([refreshChannels(), refreshPresence()]);
  }

  function renderStats(stats) {
    state.node = stats.node;
    $("node").textContent = stats.node;
    $("version").textContent = stats.version;
    $("uptime").textContent = duration(stats.uptime);
    const status = $("status");
    if (stats.ready) {
      status.textContent = "Ready";
      status.className = "pill ok";
    } else {
      status.textContent = stats.reasons.join(", ").replace(/^./, (c) => c.toUpperCase());
      status.className = `pill ${stats.reasons.includes("broker unreachable") ? "bad" : "warn"}`;
    }

    const { total, ...transports } = stats.connections;
    $("k-connections").textContent = integer.format(total);
    const parts = Object.entries(transports).map(([name, count]) => `${name} ${integer.format(count)}`);
    $("k-transports").textContent = `${parts.join(" · ") || "no clients"} · ${integer.format(stats.identities)} identities`;

    const nodes = stats.nodes;
    $("k-nodes").textContent = nodes === null ? "?" : integer.format(nodes.length);
    $("k-broker").textContent = `${stats.broker.kind || "broker"}${stats.broker.connected === false ? " · unreachable" : ""}`;
    renderRates(stats);
    renderServices(stats.services);
    renderCluster(stats);
  }

  function renderRates(stats) {
    const totals = stats.totals;
    $("metrics-note").hidden = totals !== null;
    if (totals === null) return;
    const previous = state.previous;
    state.previous = { totals, time: stats.time };
    $("k-in-total").textContent = `${integer.format(totals.received)} received`;
    $("k-out-total").textContent = `${integer.format(totals.sent)} sent`;
    $("k-deliveries-total").textContent = `${integer.format(totals.deliveries)} delivered`;
    if (previous === null || stats.time <= previous.time) return;
    const seconds = stats.time - previous.time;
    const sample = {
      in: (totals.received - previous.totals.received) / seconds,
      out: (totals.sent - previous.totals.sent) / seconds,
      deliveries: (totals.deliveries - previous.totals.deliveries) / seconds,
    };
    state.samples.push(sample);
    if (state.samples.length > KEEP) state.samples.shift();
    $("k-in").textContent = rate(sample.in);
    $("k-out").textContent = rate(sample.out);
    $("k-deliveries").textContent = rate(sample.deliveries);
    drawChart();
  }

  function drawChart() {
    const samples = state.samples;
    const top = Math.max(1, ...samples.map((s) => Math.max(s.in, s.out, s.deliveries))) * 1.15;
    const width = 600, height = 140;
    const x = (i) => (KEEP - samples.length + i) * (width / (KEEP - 1));
    for (const key of ["in", "out", "deliveries"]) {
      const points = samples.map((s, i) => `${x(i).toFixed(1)},${(height - (s[key] / top) * height).toFixed(1)}`);
      $(`line-${key}`).setAttribute("points", points.join(" "));
    }
    $("chart-max").textContent = `· scale ${rate(top)}/s`;
  }

  function fillSelect(select, services) {
    const current = select.value;
    const names = services.map((s) => s.name);
    if (names.join("\n") === [...select.options].map((o) => o.value).join("\n")) return;
    select.replaceChildren(...names.map((name) => el("option", "", name)));
    if (names.includes(current)) select.value = current;
  }

  function renderServices(services) {
    state.services = services;
    fillSelect($("channel-service"), services.filter((s) => s.channels !== null));
    fillSelect($("presence-service"), services.filter((s) => s.presence));
    fillSelect($("publish-service"), services.filter((s) => s.publish));
    const rows = services.map((s) => {
      const row = el("tr");
      row.append(
        el("td", "mono", s.name),
        el("td", "", s.class),
        el("td", "num", s.channels === null ? "–" : integer.format(s.channels)),
        el("td", "num", s.subscriptions === null ? "–" : integer.format(s.subscriptions)),
      );
      return row;
    });
    $("services").tBodies[0].replaceChildren(...rows);
  }

  function renderCluster(stats) {
    const list = $("nodes");
    if (stats.nodes === null) {
      list.replaceChildren(el("li", "", "unknown: the broker cannot be reached"));
    } else {
      list.replaceChildren(
        ...stats.nodes.map((node) => {
          const item = el("li", node === stats.node ? "self" : "", node);
          if (node === stats.node) item.append(el("span", "tag", "this node"));
          return item;
        }),
      );
    }
    $("broker-kind").textContent = `${stats.broker.kind || ""} broker`;
    const shown = ["connected", "topics", "published", "delivered", "pending", "outages", "reconnects", "dropped", "gaps_lost"];
    const items = shown
      .filter((key) => key in stats.broker)
      .map((key) => {
        const box = el("div");
        const value = stats.broker[key];
        box.append(el("dt", "", key.replace("_", " ")), el("dd", "", typeof value === "boolean" ? (value ? "yes" : "no") : integer.format(value)));
        return box;
      });
    $("broker").replaceChildren(...items);
  }

  // Channels and presence ---------------------------------------------------------

  async function refreshChannels() {
    const service = $("channel-service").value;
    if (!service) return;
    const query = new URLSearchParams({ service, q: $("channel-filter").value, limit: "100" });
    const answer = await api(`/admin/api/channels?${query}`);
    const top = Math.max(1, ...answer.channels.map((c) => c.subscribers));
    const selected = state.presence;
    const rows = answer.channels.map(({ channel, subscribers }) => {
      const row = el("tr", "clickable");
      row.dataset.channel = JSON.stringify(channel);
      if (selected && selected.service === answer.service && JSON.stringify(selected.channel) === row.dataset.channel) {
        row.classList.add("selected");
      }
      const bar = el("div", "bar");
      bar.style.width = `${Math.max(3, (subscribers / top) * 90)}px`;
      const track = el("div", "bar-track");
      track.append(bar);
      const count = el("div", "count");
      count.append(track, el("span", "", integer.format(subscribers)));
      const cell = el("td", "num");
      cell.append(count);
      row.append(el("td", "mono", show(channel)), cell);
      row.addEventListener("click", () => selectPresence(answer.service, channel));
      return row;
    });
    $("channels").tBodies[0].replaceChildren(...rows);
    const shown = answer.channels.length;
    $("channels-note").textContent =
      answer.total === 0
        ? "No channel has a subscriber on this node."
        : `${integer.format(answer.total)} channel(s) on this node` +
          (answer.matching !== answer.total ? `, ${integer.format(answer.matching)} matching` : "") +
          (shown < answer.matching ? `, the ${shown} most subscribed shown` : "") +
          ". Click one for its presence.";
  }

  function selectPresence(service, channel) {
    const known = state.services.find((s) => s.name === service && s.presence);
    if (!known) return;
    $("presence-service").value = service;
    $("presence-channel").value = show(channel);
    state.presence = { service, channel };
    refreshPresence().catch((error) => {
      $("presence-note").textContent = error.message;
    });
  }

  async function refreshPresence() {
    const selected = state.presence;
    if (selected === null) return;
    const query = new URLSearchParams({ service: selected.service, channel: JSON.stringify(selected.channel) });
    const answer = await api(`/admin/api/presence?${query}`);
    const rows = answer.presence.map((member) => {
      const row = el("tr");
      row.append(
        el("td", "mono", show(member.identity)),
        el("td", "", describeInfo(member.info)),
        el("td", "num", integer.format(member.connections)),
      );
      return row;
    });
    $("presence").tBodies[0].replaceChildren(...rows);
    const where = `${show(selected.channel)} (${selected.service})`;
    $("presence-note").textContent = rows.length
      ? `${rows.length} identit${rows.length === 1 ? "y" : "ies"} in ${where}, on every node.`
      : `No one with an identity in ${where}.`;
  }

  $("presence-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const typed = $("presence-channel").value;
    const current = state.presence;
    const channel = current && show(current.channel) === typed ? current.channel : typed;
    selectPresence($("presence-service").value, channel);
  });

  $("channel-filter").addEventListener("input", () => refreshChannels().catch(() => null));
  $("channel-service").addEventListener("change", () => refreshChannels().catch(() => null));

  // Actions -------------------------------------------------------------------------

  $("publish-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("publish-message").value;
    let message;
    try {
      message = JSON.parse(text);
    } catch (error) {
      message = text;
    }
    const service = $("publish-service").value;
    const channel = $("publish-channel").value;
    $("publish-button").disabled = true;
    try {
      await api("/admin/api/publish", { service, channel, message });
      result("publish-result", `Published to ${channel}.`, true);
    } catch (error) {
      if (!(error instanceof SignedOut)) result("publish-result", error.message, false);
    } finally {
      $("publish-button").disabled = false;
    }
  });

  $("disconnect-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const identity = $("disconnect-identity").value;
    $("disconnect-button").disabled = true;
    try {
      const answer = await api("/admin/api/disconnect", { identity });
      const here = `${answer.disconnected} connection(s) of ${identity} closed on this node`;
      result("disconnect-result", answer.cluster ? `${here}; the other nodes close theirs.` : `${here}.`, true);
      refresh().catch(() => null);
    } catch (error) {
      if (!(error instanceof SignedOut)) result("disconnect-result", error.message, false);
    } finally {
      $("disconnect-button").disabled = false;
    }
  });

  // Start: signed in already (a session cookie) or not.
  start().catch((error) => {
    if (!(error instanceof SignedOut)) {
      showLogin();
      $("login-error").textContent = error.message;
    }
  });
})();
