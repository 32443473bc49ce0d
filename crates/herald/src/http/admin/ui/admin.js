// The Herald admin dashboard: plain DOM, no dependencies, served by the hub itself.
// Everything shown comes from /admin/api/ and is written with textContent, never as HTML.

const $ = (selector) => document.querySelector(selector);
const API = "admin/api/";
const PAGES = ["overview", "users", "channels", "publish", "inbox"];

let session = null; // { scope, apps, csrf, node }
let sampleFeed = null; // EventSource of chart points
let channelFeed = null; // EventSource of one channel's traffic
let nodesTimer = null;

/** An element with attributes (on* keys become listeners) and children (strings are text). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "className") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

class Problem extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

/** Calls the admin API; changes carry the session's CSRF token. Throws a Problem on error. */
async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session) headers["X-Herald-CSRF"] = session.csrf;
  const res = await fetch(API + path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return null;
  const answer = await res.json().catch(() => ({}));
  if (!res.ok) {
    if (res.status === 401 && path !== "session") signedOut();
    throw new Problem(res.status, answer.detail ?? `${res.status} ${res.statusText}`);
  }
  return answer;
}

const app = () => $("#app-select").value;
const appPath = (rest) => `apps/${encodeURIComponent(app())}/${rest}`;

/** Shows a failure (or, with `ok`, a success) above the page. */
function notice(message = "", ok = false) {
  $("#notice").textContent = message;
  $("#notice").className = ok ? "ok-notice" : "error";
}

/** Runs an action, showing its failure in the notice region. */
async function guarded(action) {
  notice();
  try {
    await action();
  } catch (error) {
    notice(error.message);
  }
}

// ---- Session ----

function signedOut() {
  session = null;
  sampleFeed?.close();
  channelFeed?.close();
  clearInterval(nodesTimer);
  $("#shell").hidden = true;
  $("#signin").hidden = false;
  $("#password").focus();
}

function signedIn(answer) {
  session = answer;
  const select = $("#app-select");
  select.replaceChildren(...answer.apps.map((id) => el("option", { value: id }, id)));
  select.disabled = answer.apps.length < 2;
  $("#who").textContent = answer.scope === "admin" ? "Signed in as admin (every app)" : `Signed in to app ${answer.apps[0]}`;
  $("#signin").hidden = true;
  $("#shell").hidden = false;
  route();
}

$("#signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const password = $("#password");
  $("#signin-error").textContent = "";
  try {
    signedIn(await api("POST", "session", { password: password.value }));
    password.value = "";
  } catch (error) {
    $("#signin-error").textContent = error.message;
  }
});

$("#signout").addEventListener("click", () => guarded(async () => {
  await api("DELETE", "session");
  signedOut();
}));

$("#app-select").addEventListener("change", () => route());

// ---- Routing ----

function route() {
  if (!session) return;
  const page = PAGES.find((p) => location.hash === `#/${p}`) ?? "overview";
  for (const p of PAGES) $(`#page-${p}`).hidden = p !== page;
  // The overview is the node's (every app of the session); the other pages are one app's.
  $(".app-choice").hidden = page === "overview";
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#/${page}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  notice();
  sampleFeed?.close();
  sampleFeed = null;
  clearInterval(nodesTimer);
  closeChannel();
  ({ overview: showOverview, users: () => loadUsers([]), channels: loadChannels, publish: () => {}, inbox: () => {} })[page]();
}

window.addEventListener("hashchange", route);

// ---- Overview ----

function formatUptime(secs) {
  const d = Math.floor(secs / 86400), h = Math.floor((secs % 86400) / 3600), m = Math.floor((secs % 3600) / 60);
  return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : m ? `${m} min ${secs % 60} s` : `${secs} s`;
}

const dash = (value) => (value === null || value === undefined ? "—" : String(value));

async function loadNodes() {
  const overview = await api("GET", "overview");
  $("#nodes tbody").replaceChildren(
    ...overview.nodes.map((n) => {
      const store = n.store
        ? el("span", { className: n.store.healthy ? "ok" : "bad" },
          `${n.store.kind}: ${n.store.healthy ? `ok (${n.store.latency_ms} ms)` : `down — ${n.store.error}`}`)
        : "—";
      return el("tr", {},
        el("td", {}, n.id, n.this_node ? " (this node)" : ""),
        el("td", {}, dash(n.version)),
        el("td", {}, n.uptime_secs === undefined ? "—" : formatUptime(n.uptime_secs)),
        el("td", { className: "num" }, n.connections),
        el("td", { className: "num" }, n.users),
        el("td", { className: "num" }, dash(n.publishes_per_sec)),
        el("td", { className: "num" }, dash(n.deliveries_per_sec)),
        el("td", { className: "num" }, dash(n.slow_client_drops)),
        el("td", {}, store));
    }));
  $("#apps tbody").replaceChildren(
    ...overview.apps.map((a) => el("tr", {}, el("td", {}, a.id), el("td", { className: "num" }, a.connections), el("td", { className: "num" }, a.users))));
  const notes = [];
  if (overview.cluster) {
    notes.push("Cluster: other nodes are listed from the cluster's presence (those holding connections); version, uptime, rates and store health are this node's.");
  } else {
    notes.push("Single node.");
  }
  if (overview.presence_error) notes.push(`The cluster's presence could not be read (${overview.presence_error}): other nodes are missing and the apps' figures are this node's.`);
  if (session.scope !== "admin") notes.push("Deliveries and drops are counted per node, not per app, so an app's key does not see them.");
  $("#overview-note").textContent = notes.join(" ");
}

/** A hand-drawn line chart of the last minutes on a canvas. */
class Chart {
  constructor(canvas, output, pick) {
    this.canvas = canvas;
    this.output = output;
    this.pick = pick;
    this.points = [];
  }

  set(points) {
    this.points = points.slice(-300);
    this.draw();
  }

  push(point) {
    this.points.push(point);
    if (this.points.length > 300) this.points.shift();
    this.draw();
  }

  draw() {
    const ratio = window.devicePixelRatio || 1;
    const { canvas } = this;
    const width = canvas.clientWidth || 420, height = canvas.clientHeight || 140;
    canvas.width = width * ratio;
    canvas.height = height * ratio;
    const g = canvas.getContext("2d");
    g.scale(ratio, ratio);
    g.clearRect(0, 0, width, height);
    const values = this.points.map(this.pick);
    const last = values.at(-1);
    this.output.textContent = last === null || last === undefined ? "—" : String(last);
    const known = values.filter((v) => v !== null && v !== undefined);
    const max = Math.max(1, ...known);
    const pad = { left: 36, right: 6, top: 8, bottom: 16 };
    const w = width - pad.left - pad.right, h = height - pad.top - pad.bottom;
    g.strokeStyle = "#dde1e8";
    g.fillStyle = "#5d6675";
    g.font = "11px system-ui, sans-serif";
    for (const frac of [0, 0.5, 1]) {
      const y = pad.top + h * (1 - frac);
      g.beginPath();
      g.moveTo(pad.left, y);
      g.lineTo(pad.left + w, y);
      g.stroke();
      g.fillText(String(Math.round(max * frac * 10) / 10), 2, y + 4);
    }
    g.fillText("5 min ago", pad.left, height - 3);
    g.fillText("now", pad.left + w - 20, height - 3);
    if (!known.length) {
      g.fillText(values.length ? "not counted for one app" : "waiting for samples…", pad.left + 8, pad.top + h / 2);
      return;
    }
    const end = this.points.at(-1).t, span = 300_000;
    const x = (t) => pad.left + w * (1 - (end - t) / span);
    const y = (v) => pad.top + h * (1 - v / max);
    g.beginPath();
    this.points.forEach((p, i) => {
      const v = this.pick(p) ?? 0;
      if (i === 0) g.moveTo(x(p.t), y(v));
      else g.lineTo(x(p.t), y(v));
    });
    g.strokeStyle = "#2458d6";
    g.lineWidth = 1.5;
    g.stroke();
  }
}

const charts = {
  connections: new Chart($("#chart-connections"), $("#now-connections"), (p) => p.connections),
  publishes: new Chart($("#chart-publishes"), $("#now-publishes"), (p) => p.publishes_per_sec),
  deliveries: new Chart($("#chart-deliveries"), $("#now-deliveries"), (p) => p.deliveries_per_sec),
};

function showOverview() {
  guarded(loadNodes);
  nodesTimer = setInterval(() => guarded(loadNodes), 5000);
  sampleFeed = new EventSource(`${API}stream`);
  sampleFeed.addEventListener("history", (event) => {
    const points = JSON.parse(event.data);
    for (const chart of Object.values(charts)) chart.set(points);
  });
  sampleFeed.addEventListener("sample", (event) => {
    const point = JSON.parse(event.data);
    for (const chart of Object.values(charts)) chart.push(point);
  });
}

// ---- Users and connections ----

let usersCursors = []; // cursors of the pages before the current one
let usersNext = null;

/** Asks for an optional reason, then kicks. */
function confirmKick(title, kick) {
  const dialog = $("#kick-dialog");
  const form = dialog.querySelector("form");
  $("#kick-title").textContent = title;
  form.reason.value = "";
  dialog.addEventListener("close", function onClose() {
    dialog.removeEventListener("close", onClose);
    if (dialog.returnValue === "kick") guarded(() => kick(form.reason.value));
  });
  dialog.returnValue = "";
  dialog.showModal();
}

function connectionTable(connections) {
  return el("table", {},
    el("caption", {}, "Connections"),
    el("thead", {}, el("tr", {}, ...["Id", "Tenant", "Session", "Channels", "Client", "Address", "User agent", "Connected", "Actions"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...connections.map((c) => el("tr", { "data-connection": c.id },
      el("td", {}, c.id),
      el("td", {}, dash(c.tenant)),
      el("td", {}, dash(c.session)),
      el("td", {}, c.channels.join(", ") || "—"),
      el("td", {}, dash(c.client_id)),
      el("td", {}, c.remote_addr),
      el("td", {}, dash(c.user_agent)),
      el("td", {}, c.connected_at),
      el("td", {}, el("button", {
        type: "button",
        className: "danger",
        "aria-label": "Kick",
        title: `Kick connection ${c.id}`,
        onclick: () => confirmKick(`Kick connection ${c.id}`, async (reason) => {
          await api("POST", appPath(`connections/${encodeURIComponent(c.id)}/kick`), { reason });
          await loadUsers(usersCursors);
        }),
      }, "Kick"))))));
}

async function loadUsers(cursors) {
  usersCursors = cursors;
  const form = $("#users-form");
  const query = new URLSearchParams({ q: form.q.value, tenant: form.tenant.value, channel: form.channel.value, limit: "50" });
  if (cursors.length) query.set("cursor", cursors.at(-1));
  let answer;
  try {
    answer = await api("GET", `${appPath("users")}?${query}`);
  } catch (error) {
    notice(error.message);
    return;
  }
  usersNext = answer.next_cursor;
  $("#users-prev").disabled = !cursors.length;
  $("#users-next").disabled = !usersNext;
  const anonymous = answer.anonymous_connections ? `, and ${answer.anonymous_connections} anonymous connections` : "";
  $("#users-summary").textContent = `${answer.total} users online match${anonymous}.`;
  const rows = [];
  for (const user of answer.users) {
    const details = el("tr", { className: "details", hidden: true }, el("td", { colspan: 4 }, connectionTable(user.connections)));
    const toggle = el("button", {
      type: "button",
      "aria-expanded": "false",
      onclick: () => {
        details.hidden = !details.hidden;
        toggle.setAttribute("aria-expanded", String(!details.hidden));
      },
    }, "Connections");
    const tenants = [...new Set(user.connections.map((c) => c.tenant).filter(Boolean))].join(", ") || "—";
    rows.push(el("tr", { "data-user": user.id },
      el("td", {}, user.id),
      el("td", { className: "num" }, user.connections.length),
      el("td", {}, tenants),
      el("td", {}, toggle, " ", el("button", {
        type: "button",
        className: "danger",
        title: `Kick every connection of ${user.id}`,
        onclick: () => confirmKick(`Kick user ${user.id}`, async (reason) => {
          const answer = await api("POST", appPath(`users/${encodeURIComponent(user.id)}/kick`), { reason });
          notice(`Kicked ${answer.kicked} connection(s) of ${user.id}.`, true);
          await loadUsers(usersCursors);
        }),
      }, "Kick"))), details);
  }
  $("#users tbody").replaceChildren(...rows);
}

$("#users-form").addEventListener("submit", (event) => {
  event.preventDefault();
  loadUsers([]);
});
$("#users-next").addEventListener("click", () => usersNext && loadUsers([...usersCursors, usersNext]));
$("#users-prev").addEventListener("click", () => loadUsers(usersCursors.slice(0, -1)));

// ---- Channels ----

function messageItem(m) {
  return el("li", {}, `${m.at.slice(11, 19)} ${m.id} ${m.event ?? "message"} ${m.durable ? "(durable) " : ""}${m.data}`);
}

function closeChannel() {
  channelFeed?.close();
  channelFeed = null;
  $("#channel-detail").hidden = true;
}

async function openChannel(name) {
  closeChannel();
  const base = appPath(`channels/${encodeURIComponent(name)}`);
  const history = await api("GET", `${base}/history?limit=100`);
  $("#channel-title").textContent = `Channel ${name}`;
  $("#channel-history").replaceChildren(...history.messages.reverse().map(messageItem));
  const live = $("#channel-live");
  live.replaceChildren();
  $("#channel-detail").hidden = false;
  channelFeed = new EventSource(`${API}${base}/live`);
  channelFeed.addEventListener("message", (event) => {
    live.prepend(messageItem(JSON.parse(event.data)));
    while (live.children.length > 200) live.lastChild.remove();
  });
  channelFeed.addEventListener("skipped", (event) => {
    live.prepend(el("li", {}, `… ${JSON.parse(event.data).skipped} more messages not shown`));
  });
}

async function loadChannels() {
  const q = $("#channels-form").q.value;
  await guarded(async () => {
    const answer = await api("GET", `${appPath("channels")}?${new URLSearchParams({ q })}`);
    $("#channels tbody").replaceChildren(...answer.channels.map((c) => el("tr", {},
      el("td", {}, c.name),
      el("td", { className: "num" }, c.subscribers),
      el("td", { className: "num" }, c.users),
      el("td", {}, el("button", { type: "button", "aria-label": `Open ${c.name}`, onclick: () => guarded(() => openChannel(c.name)) }, "Open")))));
    if (!answer.channels.length) $("#channels tbody").append(el("tr", {}, el("td", { colspan: 4, className: "muted" }, "No channel has subscribers.")));
  });
}

$("#channels-form").addEventListener("submit", (event) => {
  event.preventDefault();
  loadChannels();
});
$("#channel-close").addEventListener("click", closeChannel);

// ---- Publish ----

const list = (value) => value.split(",").map((s) => s.trim()).filter(Boolean);

$("#publish-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.target;
  const result = $("#publish-result");
  guarded(async () => {
    result.replaceChildren();
    const to = { users: list(form.users.value), sessions: list(form.sessions.value), tenants: list(form.tenants.value), channels: list(form.channels.value), all: form.all.checked };
    let data = form.data.value;
    try {
      data = JSON.parse(data);
    } catch {
      // Not JSON: sent as a string.
    }
    const body = { to, data, durable: form.durable.checked };
    if (form.event.value.trim()) body.event = form.event.value.trim();
    if (form.ttl.value) body.ttl = Number(form.ttl.value);
    const answer = await api("POST", appPath("publish"), body);
    const rows = [["Id", answer.id], ["Delivered", String(answer.delivered)]];
    if (answer.complete === false) rows.push(["Incomplete", `${answer.unreported_nodes} node(s) did not report in time`]);
    result.replaceChildren(el("h2", {}, "Published"), el("dl", {}, ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-field": k.toLowerCase() }, v)])));
  });
});

// ---- Inbox ----

let inboxShown = [];
let inboxNext = null;

async function loadInbox(more = false) {
  const form = $("#inbox-form");
  const query = new URLSearchParams({ state: form.state.value, limit: "50" });
  if (more && inboxNext) query.set("cursor", inboxNext);
  const user = form.user.value.trim();
  const answer = await api("GET", `${appPath(`users/${encodeURIComponent(user)}/messages`)}?${query}`);
  inboxShown = more ? [...inboxShown, ...answer.messages] : answer.messages;
  inboxNext = answer.next_cursor;
  $("#inbox-more").disabled = !inboxNext;
  $("#inbox-summary").textContent = `${user} has ${answer.unread} unread message(s).`;
  $("#inbox tbody").replaceChildren(...inboxShown.map((m) => el("tr", { "data-id": m.id },
    el("td", {}, m.id),
    el("td", {}, m.event ?? "message"),
    el("td", {}, m.data),
    el("td", {}, m.created_at),
    el("td", {}, m.expires_at),
    el("td", {}, m.read_at ?? "unread"),
    el("td", {}, m.read_at ? "" : el("button", { type: "button", onclick: () => acknowledge(user, [m.id]) }, "Acknowledge")))));
  $("#inbox-ack-all").disabled = !inboxShown.some((m) => !m.read_at);
}

function acknowledge(user, ids) {
  return guarded(async () => {
    await api("POST", appPath(`users/${encodeURIComponent(user)}/ack`), { ids });
    await loadInbox();
  });
}

$("#inbox-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guarded(() => loadInbox());
});
$("#inbox-more").addEventListener("click", () => guarded(() => loadInbox(true)));
$("#inbox-ack-all").addEventListener("click", () => {
  acknowledge($("#inbox-form").user.value.trim(), inboxShown.filter((m) => !m.read_at).map((m) => m.id));
});

// ---- Start ----

api("GET", "session").then(signedIn, signedOut);
