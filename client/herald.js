// herald.js — browser client for the Herald push hub (docs/PROTOCOL.md).
// A dependency-free ES module: the hub serves this file verbatim at GET /herald.js.

export const VERSION = "0.1.0";

const STATE_EVENTS = new Set(["open", "reconnecting", "closed"]);
// Control events carry no id; EventSource would report the previous event's id for them.
const ID_LESS = new Set(["herald.unread", "herald.kicked", "herald.ping"]);
const ALWAYS_LISTENED = ["message", "herald.connected", "herald.reset", ...ID_LESS];

const POLL_GRACE_SECS = 15;

const DEFAULTS = {
  shared: true,
  autoAck: true,
  transport: "auto",
  silenceTimeout: 45_000,
  probeInterval: 30_000,
  pollTimeout: 25,
  hiddenTimeout: null,
  reconnect: { initialDelay: 500, maxDelay: 30_000 },
};

// ---------------------------------------------------------------------------
// Pure helpers (exported through _internal for tests; no DOM needed).

/** Parses `<epoch>-<seq>[-d]`. Returns null for anything else. */
function parseId(id) {
  if (typeof id !== "string") return null;
  const m = /^(.+)-(\d+)(-d)?$/.exec(id);
  return m ? { epoch: m[1], seq: BigInt(m[2]), durable: m[3] !== undefined } : null;
}

/** The position an id stands for: the id without its `-d` suffix. */
function positionOf(id) {
  const p = parseId(id);
  return p ? `${p.epoch}-${p.seq}` : null;
}

const isDurable = (id) => parseId(id)?.durable === true;

/** -1, 0 or 1 by sequence; null when either id is malformed or the epochs differ. */
function comparePositions(a, b) {
  const pa = parseId(a);
  const pb = parseId(b);
  if (!pa || !pb || pa.epoch !== pb.epoch) return null;
  return pa.seq < pb.seq ? -1 : pa.seq > pb.seq ? 1 : 0;
}

/**
 * The resume position after seeing `id`. Durable backlog arrives older than the position, so
 * the position only moves forward; a new epoch means the hub's history was reset, so it wins.
 */
function advancePosition(current, id) {
  const next = positionOf(id);
  if (!next) return current;
  if (!current) return next;
  const order = comparePositions(next, current);
  return order === null || order > 0 ? next : current;
}

/** Exponential backoff with "equal jitter": a delay in [base/2, base]. */
function backoffDelay(attempt, { initialDelay, maxDelay }, random = Math.random) {
  const base = Math.min(maxDelay, initialDelay * 2 ** Math.min(attempt, 30));
  return base / 2 + random() * (base / 2);
}

/** A set of recently seen positions with a bounded memory. */
class SeenIds {
  #ids = new Set();
  #limit;

  constructor(limit = 4096) {
    this.#limit = limit;
  }

  has(id) {
    return this.#ids.has(positionOf(id) ?? id);
  }

  add(id) {
    this.#ids.add(positionOf(id) ?? id);
    if (this.#ids.size > this.#limit) this.#ids.delete(this.#ids.values().next().value);
  }

  clear() {
    this.#ids.clear();
  }
}

/**
 * True when an event with this id was already delivered. Non-durable events arrive in id order,
 * so anything at or behind the position is old even after it left the bounded `seen` set.
 */
function isDuplicate(id, position, seen) {
  if (seen.has(id)) return true;
  if (isDurable(id) || !position) return false;
  const order = comparePositions(id, position);
  return order !== null && order <= 0;
}

/**
 * Collects ids and hands them to `send(ids)` in batches: after `delay` ms or at `max` ids.
 * Ids of a failed batch stay pending until the next flush.
 */
function createAckBatcher({ send, delay = 100, max = 100, timers = globalThis }) {
  const pending = new Set();
  let timer = null;

  async function flush() {
    if (timer !== null) timers.clearTimeout(timer);
    timer = null;
    if (pending.size === 0) return;
    const ids = [...pending];
    pending.clear();
    try {
      await send(ids);
    } catch {
      for (const id of ids) pending.add(id);
    }
  }

  function add(id) {
    pending.add(id);
    if (pending.size >= max) flush();
    else if (timer === null) timer = timers.setTimeout(flush, delay);
  }

  return { add, flush, get size() { return pending.size; } };
}

/**
 * A FIFO of HTTP calls that only runs while online. A network failure (fetch's TypeError) keeps
 * the call at the head of the queue and retries it after a backoff or the next `setOnline(true)`;
 * any answer from the server, whatever its status, settles the call.
 */
class SendQueue {
  #jobs = [];
  #online = false;
  #draining = false;
  #wake = null;
  #attempt;
  #delay;

  constructor(attempt, delay) {
    this.#attempt = attempt;
    this.#delay = delay;
  }

  get size() {
    return this.#jobs.length;
  }

  push(job) {
    return new Promise((resolve, reject) => {
      this.#jobs.push({ job, resolve, reject });
      this.#drain();
    });
  }

  setOnline(online) {
    this.#online = online;
    if (!online) return;
    this.#wake?.();
    this.#drain();
  }

  fail(error) {
    for (const { reject } of this.#jobs.splice(0)) reject(error);
    this.#wake?.();
  }

  async #drain() {
    if (this.#draining) return;
    this.#draining = true;
    let failures = 0;
    while (this.#online && this.#jobs.length > 0) {
      const head = this.#jobs[0];
      try {
        const result = await this.#attempt(head.job);
        failures = 0;
        this.#settle(head, () => head.resolve(result));
      } catch (error) {
        if (error instanceof TypeError) await this.#pause(this.#delay(failures++));
        else this.#settle(head, () => head.reject(error));
      }
    }
    this.#draining = false;
  }

  // fail() may have emptied the queue while the head was in flight.
  #settle(head, settle) {
    if (this.#jobs[0] === head) this.#jobs.shift();
    settle();
  }

  #pause(ms) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }
}

/** RFC 4122 v4; crypto.randomUUID needs a secure context, getRandomValues does not. */
function uuid() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Plain objects, arrays, numbers and booleans are sent as JSON; bodies fetch knows go as-is. */
function needsJson(body) {
  if (body === null || body === undefined || typeof body === "string") return false;
  if (typeof body !== "object") return true;
  const proto = Object.getPrototypeOf(body);
  return proto === Object.prototype || proto === null || Array.isArray(body);
}

function reportError(error) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(error);
  else console.error(error);
}

/** An AbortSignal that follows `signal` and also aborts after `ms`; call `clear()` when done. */
function deadline(signal, ms) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException("timed out", "TimeoutError")), ms);
  const follow = () => controller.abort(signal.reason);
  signal.addEventListener("abort", follow, { once: true });
  const clear = () => {
    clearTimeout(timer);
    signal.removeEventListener("abort", follow);
  };
  return { signal: controller.signal, clear };
}

function delay(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

// ---------------------------------------------------------------------------
// Transport: one EventSource, or long-polling with periodic attempts to stream again.

class Transport {
  #owner;
  #opts;
  #running = false;
  #generation = 0; // bumped by start/stop so stale async work can tell it is stale
  #mode = "sse";
  #attempt = 0;
  #es = null;
  #esHandler = null;
  #esProbe = false;
  #esInfo = null; // herald.connected of the current EventSource, once seen
  #silenceTimer = null;
  #retryTimer = null;
  #probeTimer = null;
  #pollAbort = null;

  /**
   * owner: { streamUrl(), pollOnce(signal, first), eventNames(), connected(id, info),
   *          receive(record), opened(transport, info), reconnecting(reason) }
   */
  constructor(owner, opts) {
    this.#owner = owner;
    this.#opts = opts;
  }

  get mode() {
    return this.#mode;
  }

  start() {
    if (this.#running) return;
    this.#running = true;
    this.#generation++;
    this.#attempt = 0;
    this.#mode = this.#canStream() ? "sse" : "poll";
    this.#connect();
  }

  stop() {
    this.#running = false;
    this.#generation++;
    this.#closeStream();
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#probeTimer);
    this.#pollAbort?.abort();
    this.#pollAbort = null;
  }

  /** EventSource only dispatches names it was asked for; listeners may appear later. */
  listen(name) {
    this.#es?.addEventListener(name, this.#esHandler);
  }

  #canStream() {
    return this.#opts.transport !== "poll" && typeof globalThis.EventSource === "function";
  }

  #connect() {
    if (!this.#running) return;
    if (this.#mode === "sse") this.#openStream(false);
    else this.#pollLoop();
  }

  async #openStream(probe) {
    const generation = this.#generation;
    let url;
    try {
      url = await this.#owner.streamUrl();
    } catch (error) {
      reportError(error);
      if (probe) this.#scheduleProbe();
      else this.#retry("token");
      return;
    }
    if (generation !== this.#generation || (probe && this.#mode !== "poll")) return;
    const es = new EventSource(url);
    this.#es = es;
    this.#esProbe = probe;
    this.#esInfo = null;
    this.#esHandler = (event) => this.#onStreamEvent(es, event);
    for (const name of this.#owner.eventNames()) es.addEventListener(name, this.#esHandler);
    es.onerror = () => this.#onStreamEnd(es, "error");
    this.#armSilence(es);
  }

  #onStreamEvent(es, event) {
    if (es !== this.#es) return;
    this.#armSilence(es);
    const name = event.type;
    if (name === "herald.connected") {
      this.#esInfo = safeJson(event.data) ?? {};
      this.#owner.connected(event.lastEventId, this.#esInfo);
      if (!this.#esProbe) this.#established("sse", this.#esInfo);
      return;
    }
    if (name !== "herald.ping") {
      const id = ID_LESS.has(name) ? undefined : event.lastEventId || undefined;
      this.#owner.receive({ id, event: name === "message" ? undefined : name, data: event.data });
    }
    // A probe has proved itself once something arrives after herald.connected.
    if (this.#esProbe && this.#esInfo && this.#es === es) this.#promote();
  }

  #promote() {
    this.#mode = "sse";
    this.#esProbe = false;
    clearTimeout(this.#probeTimer);
    this.#pollAbort?.abort();
    this.#pollAbort = null;
    this.#established("sse", this.#esInfo);
  }

  #established(transport, info) {
    this.#attempt = 0;
    this.#owner.opened(transport, info);
  }

  #armSilence(es) {
    clearTimeout(this.#silenceTimer);
    this.#silenceTimer = setTimeout(() => this.#onStreamEnd(es, "silent"), this.#opts.silenceTimeout);
  }

  #onStreamEnd(es, why) {
    if (es !== this.#es) return;
    const wasProbe = this.#esProbe;
    this.#closeStream();
    if (wasProbe) return this.#scheduleProbe();
    if (why === "silent") {
      // Something between us and the hub holds the stream back: poll until streaming works.
      this.#mode = "poll";
      this.#owner.reconnecting("silent");
      this.#connect();
    } else {
      this.#retry(why);
    }
  }

  #closeStream() {
    clearTimeout(this.#silenceTimer);
    this.#es?.close();
    this.#es = null;
    this.#esInfo = null;
  }

  #retry(reason) {
    if (!this.#running) return;
    this.#owner.reconnecting(reason);
    const wait = backoffDelay(this.#attempt++, this.#opts.reconnect);
    this.#retryTimer = setTimeout(() => this.#connect(), wait);
  }

  async #pollLoop() {
    const abort = new AbortController();
    this.#pollAbort = abort;
    this.#scheduleProbe();
    let first = true;
    while (this.#running && this.#mode === "poll" && !abort.signal.aborted) {
      try {
        await this.#owner.pollOnce(abort.signal, first);
        if (first) this.#established("poll", null);
        first = false;
      } catch (error) {
        if (abort.signal.aborted) return;
        if (!first) this.#owner.reconnecting("error");
        first = true;
        await delay(backoffDelay(this.#attempt++, this.#opts.reconnect), abort.signal);
      }
    }
  }

  #scheduleProbe() {
    clearTimeout(this.#probeTimer);
    if (!this.#running || this.#mode !== "poll" || !this.#canStream()) return;
    this.#probeTimer = setTimeout(() => this.#openStream(true), this.#opts.probeInterval);
  }
}

// ---------------------------------------------------------------------------
// Connection: listeners, positions, acks, sends, and sharing one transport between tabs.

class HeraldEvent {
  constructor({ id, event, data }) {
    this.id = id ?? null;
    this.event = event ?? "message";
    this.data = data;
    this.durable = isDurable(id);
  }

  /** The payload parsed as JSON. */
  json() {
    return JSON.parse(this.data);
  }
}

class Connection {
  #opts;
  #base;
  #key;
  #tab = uuid();
  #listeners = new Map();
  #state = "connecting";
  #closed = false;
  #token = null;
  #position = null;
  #seen = new SeenIds();
  #connectionId = null;
  #user = null;
  #unread = null;
  #acks;
  #sends;
  // Sharing between tabs.
  #role = "solo"; // "solo" | "leader" | "follower"
  #transport = null;
  #channel = null;
  #lockAbort = null;
  #stepDown = null;
  #remoteNames = new Set();
  #tabs = new Map(); // follower tab id -> visible (leader only)
  #hiddenTimer = null;
  #dormant = false;
  #onVisibility = () => this.#visibilityChanged();
  #onPageHide = () => this.#role === "follower" && this.#post({ type: "bye", tab: this.#tab });

  constructor(url, options) {
    this.#opts = { ...DEFAULTS, ...options, reconnect: { ...DEFAULTS.reconnect, ...options.reconnect } };
    this.#setBase(url);
    this.#acks = createAckBatcher({ send: (ids) => this.#postAck(ids) });
    this.#sends = new SendQueue(
      (job) => this.#deliverSend(job),
      (n) => backoffDelay(n, this.#opts.reconnect),
    );
  }

  get state() { return this.#state; }
  get connectionId() { return this.#connectionId; }
  get user() { return this.#user; }
  get position() { return this.#position; }
  get unread() { return this.#unread; }
  /** "sse" or "poll" in the tab that holds the hub connection; null in follower tabs. */
  get transport() { return this.#transport?.mode ?? null; }
  /** "solo" (own connection), "leader" (holds the shared one) or "follower". */
  get role() { return this.#role; }

  isActive() {
    return this.#state === "open";
  }

  on(event, fn) {
    for (const [name, f] of pairs(event, fn)) {
      if (!this.#listeners.has(name)) {
        this.#listeners.set(name, new Set());
        if (!STATE_EVENTS.has(name)) this.#announceName(name);
      }
      this.#listeners.get(name).add(f);
    }
    return this;
  }

  off(event, fn) {
    for (const [name, f] of pairs(event, fn)) this.#listeners.get(name)?.delete(f);
    return this;
  }

  /** Acknowledges a durable message (sent in a batch). */
  ack(id) {
    if (!isDurable(id)) throw new TypeError(`herald: ${id} is not a durable message id`);
    this.#acks.add(id);
  }

  /** POST {url}/send/{path}; queued while offline, retried on network failure. */
  send(path, body, { query, headers } = {}) {
    if (this.#closed) return Promise.reject(new Error("herald: connection is closed"));
    return this.#sends.push({ path, body, query, headers, key: uuid() });
  }

  /** Multipart upload to {url}/send/{path}; same delivery rules as send(). */
  upload(path, formData, options) {
    if (!(formData instanceof FormData)) throw new TypeError("herald: upload() takes a FormData");
    return this.send(path, formData, options);
  }

  /** Moves this tab to another hub, resuming from the current position. */
  switchUrl(url) {
    if (this.#closed) throw new Error("herald: connection is closed");
    this.#teardown();
    this.#setBase(url);
    this.#setState("reconnecting", { reason: "switch" });
    this.#start();
  }

  close(reason = "closed") {
    if (this.#closed) return;
    this.#closed = true;
    this.#teardown();
    this.#acks.flush();
    this.#sends.fail(new Error(`herald: connection closed (${reason})`));
    this.#setState("closed", { reason });
  }

  // --- setup -----------------------------------------------------------------

  async init() {
    await this.#refreshToken();
    if (typeof document !== "undefined") {
      document.addEventListener("visibilitychange", this.#onVisibility);
      addEventListener("pagehide", this.#onPageHide);
    }
    this.#start();
  }

  #setBase(url) {
    const base = new URL(url, globalThis.location?.href);
    this.#base = base.href.replace(/\/+$/, "");
    const channels = [...(this.#opts.channels ?? [])].sort();
    this.#key = `herald:${JSON.stringify([this.#base, this.#opts.app ?? "", channels, this.#opts.clientId ?? ""])}`;
  }

  #start() {
    const canShare = typeof BroadcastChannel === "function" && globalThis.navigator?.locks;
    if (this.#opts.shared && canShare) this.#elect();
    else this.#lead("solo");
  }

  #teardown() {
    this.#transport?.stop();
    this.#transport = null;
    clearTimeout(this.#hiddenTimer);
    this.#hiddenTimer = null;
    this.#dormant = false;
    if (this.#role === "follower") this.#post({ type: "bye", tab: this.#tab });
    this.#lockAbort?.abort();
    this.#stepDown?.();
    this.#stepDown = null;
    this.#channel?.close();
    this.#channel = null;
    if (this.#closed && typeof document !== "undefined") {
      document.removeEventListener("visibilitychange", this.#onVisibility);
      removeEventListener("pagehide", this.#onPageHide);
    }
  }

  // --- leader election ---------------------------------------------------------

  #elect() {
    this.#role = "follower";
    this.#channel = new BroadcastChannel(this.#key);
    this.#channel.onmessage = (event) => this.#onChannel(event.data);
    const abort = new AbortController();
    this.#lockAbort = abort;
    navigator.locks
      .request(this.#key, { signal: abort.signal }, () => (abort.signal.aborted ? null : this.#lead("leader")))
      .catch((error) => error.name === "AbortError" || reportError(error));
    this.#hello();
  }

  /** Runs the hub connection in this tab; for a leader, resolves when it steps down. */
  #lead(role) {
    if (role === "leader" && this.#role === "follower" && this.#state !== "connecting") {
      this.#setState("reconnecting", { reason: "handover" });
    }
    this.#role = role;
    this.#tabs.clear();
    this.#transport = new Transport(this.#transportOwner(), this.#opts);
    this.#transport.start();
    this.#evaluateVisibility();
    if (role === "solo") return;
    this.#post({ type: "who" });
    return new Promise((resolve) => {
      this.#stepDown = resolve;
    });
  }

  #post(message) {
    this.#channel?.postMessage(message);
  }

  #hello() {
    this.#post({ type: "hello", tab: this.#tab, names: this.#ownNames(), visible: isVisible() });
  }

  #onChannel(msg) {
    if (this.#role === "leader") this.#onFollowerMessage(msg);
    else if (this.#role === "follower") this.#onLeaderMessage(msg);
  }

  // Followers send hello {tab, names, visible}, names {tab, names}, visible {tab, visible}, bye {tab}.
  #onFollowerMessage(msg) {
    if (msg.type === "hello") this.#post({ type: "state", state: this.#state, info: this.#stateInfo() });
    for (const name of msg.names ?? []) this.#addRemoteName(name);
    if (msg.type === "bye") this.#tabs.delete(msg.tab);
    else if ("visible" in msg) this.#tabs.set(msg.tab, msg.visible);
    else return;
    this.#evaluateVisibility();
  }

  #onLeaderMessage(msg) {
    switch (msg.type) {
      case "event":
        this.#receive(msg.record);
        break;
      case "state":
        if (msg.info?.position) this.#position = advancePosition(this.#position, msg.info.position);
        if (msg.info && "connectionId" in msg.info) this.#connectionId = msg.info.connectionId;
        if (msg.info?.user) this.#user = msg.info.user;
        if (msg.state !== "connecting") this.#setState(msg.state, msg.info);
        break;
      case "who":
        this.#hello();
        break;
    }
  }

  #ownNames() {
    return [...this.#listeners.keys()].filter((name) => !STATE_EVENTS.has(name));
  }

  #announceName(name) {
    if (this.#role === "follower") this.#post({ type: "names", tab: this.#tab, names: [name] });
    else this.#transport?.listen(name);
  }

  #addRemoteName(name) {
    if (this.#remoteNames.has(name) || this.#listeners.has(name)) return;
    this.#remoteNames.add(name);
    this.#transport?.listen(name);
  }

  // --- visibility policy -------------------------------------------------------

  #visibilityChanged() {
    if (this.#role === "follower") this.#post({ type: "visible", tab: this.#tab, visible: isVisible() });
    else this.#evaluateVisibility();
  }

  /** Drops the hub connection once every tab has been hidden for hiddenTimeout ms. */
  #evaluateVisibility() {
    if (this.#opts.hiddenTimeout == null || !this.#transport) return;
    const anyVisible = isVisible() || [...this.#tabs.values()].some(Boolean);
    if (anyVisible) {
      clearTimeout(this.#hiddenTimer);
      this.#hiddenTimer = null;
      if (this.#dormant) {
        this.#dormant = false;
        this.#transport.start();
      }
    } else if (this.#hiddenTimer === null && !this.#dormant) {
      this.#hiddenTimer = setTimeout(() => {
        this.#hiddenTimer = null;
        this.#dormant = true;
        this.#transport.stop();
        this.#setState("reconnecting", { reason: "hidden" });
      }, this.#opts.hiddenTimeout);
    }
  }

  // --- what the transport needs ------------------------------------------------

  #transportOwner() {
    return {
      streamUrl: () => this.#streamUrl(),
      pollOnce: (signal, first) => this.#pollOnce(signal, first),
      eventNames: () => new Set([...ALWAYS_LISTENED, ...this.#ownNames(), ...this.#remoteNames]),
      connected: (id, info) => {
        this.#position = advancePosition(this.#position, id || info.position);
        this.#connectionId = info.connection_id ?? null;
        this.#user = info.user ?? null;
      },
      receive: (record) => this.#receive(record),
      opened: (transport) => {
        if (transport === "poll") this.#connectionId = null;
        this.#setState("open", { transport });
      },
      reconnecting: (reason) => this.#setState("reconnecting", { reason }),
    };
  }

  async #streamUrl() {
    await this.#refreshToken();
    return this.#hubUrl("/events", {
      ...this.#subscription(),
      lastEventId: this.#position,
      access_token: this.#token,
      ping: "1",
    });
  }

  async #pollOnce(signal, first) {
    // The first call answers at once so that "open" is not held back by a long poll.
    const wait = first ? 0 : this.#opts.pollTimeout;
    const url = this.#hubUrl("/poll", {
      ...this.#subscription(),
      lastEventId: this.#position,
      timeout: String(wait),
    });
    if (first) await this.#refreshToken();
    // A hub (or proxy) that never answers must not stall polling forever.
    const limit = deadline(signal, (wait + POLL_GRACE_SECS) * 1000);
    let body;
    try {
      const res = await this.#fetch(url, { signal: limit.signal });
      if (!res.ok) throw new Error(`herald: GET /poll answered ${res.status}`);
      body = await res.json();
    } finally {
      limit.clear();
    }
    for (const record of body.events ?? []) this.#receive(record);
    if (body.lastEventId) {
      this.#position = body.reset ? positionOf(body.lastEventId) : advancePosition(this.#position, body.lastEventId);
    }
  }

  #subscription() {
    return { channel: this.#opts.channels, client_id: this.#opts.clientId, app: this.#opts.app };
  }

  #hubUrl(path, params = {}) {
    const url = new URL(this.#base + path);
    for (const [name, value] of Object.entries(params)) {
      for (const v of [value].flat()) if (v !== undefined && v !== null) url.searchParams.append(name, v);
    }
    return url.href;
  }

  // --- events ------------------------------------------------------------------

  #receive(record) {
    if (this.#closed) return;
    const name = record.event ?? "message";
    if (name === "herald.reset") {
      this.#seen.clear();
      this.#position = record.id ? positionOf(record.id) : null;
    } else if (record.id) {
      if (isDuplicate(record.id, this.#position, this.#seen)) return;
      this.#seen.add(record.id);
      this.#position = advancePosition(this.#position, record.id);
    }
    if (this.#role === "leader") this.#post({ type: "event", record });
    this.#dispatch(new HeraldEvent(record));
    if (name === "herald.unread") this.#setUnread(safeJson(record.data)?.unread);
    if (name === "herald.kicked") this.close("kicked");
  }

  #dispatch(event) {
    const fns = [...(this.#listeners.get(event.event) ?? [])];
    const results = [];
    let failed = false;
    for (const fn of fns) {
      try {
        results.push(fn.call(this, event));
      } catch (error) {
        failed = true;
        reportError(error);
      }
    }
    // Acknowledge only what listeners handled without failing (at-least-once).
    if (event.durable && this.#opts.autoAck && fns.length > 0 && !failed) {
      Promise.all(results).then(() => this.#closed || this.#acks.add(event.id), reportError);
    }
  }

  #emit(name, detail) {
    for (const fn of [...(this.#listeners.get(name) ?? [])]) {
      try {
        fn.call(this, detail);
      } catch (error) {
        reportError(error);
      }
    }
  }

  #setState(state, info = {}) {
    if (this.#role === "leader" && state !== "closed") {
      this.#post({ type: "state", state, info: { ...this.#stateInfo(), ...info } });
    }
    const changed = state !== this.#state;
    this.#state = state;
    this.#sends.setOnline(state === "open");
    if (state === "open") this.#acks.flush();
    if (changed) this.#emit(state, { ...this.#stateInfo(), ...info, role: this.#role });
  }

  #stateInfo() {
    return {
      connectionId: this.#connectionId,
      user: this.#user,
      position: this.#position,
      transport: this.transport,
      role: this.#role,
    };
  }

  #setUnread(count) {
    if (typeof count !== "number" || count === this.#unread) return;
    this.#unread = count;
    try {
      this.#opts.onUnread?.(count);
    } catch (error) {
      reportError(error);
    }
  }

  // --- HTTP calls --------------------------------------------------------------

  async #refreshToken() {
    const { token, getToken } = this.#opts;
    this.#token = getToken ? await getToken() : (token ?? null);
    return this.#token;
  }

  /** fetch with the user's token; a 401 refreshes the token once and tries again. */
  async #fetch(url, init = {}, retried = false) {
    const headers = new Headers(init.headers);
    if (this.#token) headers.set("Authorization", `Bearer ${this.#token}`);
    if (this.#opts.app) headers.set("X-Herald-App", this.#opts.app);
    const res = await fetch(url, { ...init, headers });
    if (res.status === 401 && !retried && this.#opts.getToken) {
      await this.#refreshToken();
      return this.#fetch(url, init, true);
    }
    return res;
  }

  async #postAck(ids) {
    // The app goes in the query too: a CORS preflight cannot carry the X-Herald-App value.
    const res = await this.#fetch(this.#hubUrl("/ack", { app: this.#opts.app }), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ids }),
      keepalive: true,
    });
    if (!res.ok) throw new Error(`herald: POST /ack answered ${res.status}`);
    this.#setUnread((await res.json()).unread);
  }

  #deliverSend({ path, body, query, headers, key }) {
    const url = new URL(`${this.#base}/send/${String(path).replace(/^\/+/, "")}`);
    if (query) url.search = new URLSearchParams(query).toString();
    if (this.#opts.app) url.searchParams.set("app", this.#opts.app); // for the CORS preflight
    const h = new Headers(headers);
    h.set("Idempotency-Key", key);
    if (this.#connectionId) h.set("X-Herald-Connection", this.#connectionId);
    let payload = body;
    if (needsJson(body)) {
      payload = JSON.stringify(body);
      if (!h.has("Content-Type")) h.set("Content-Type", "application/json");
    }
    return this.#fetch(url.href, { method: "POST", headers: h, body: payload });
  }
}

function pairs(event, fn) {
  if (typeof event === "string") {
    if (typeof fn !== "function") throw new TypeError("herald: listener must be a function");
    return [[event, fn]];
  }
  return Object.entries(event ?? {});
}

function isVisible() {
  return typeof document === "undefined" || document.visibilityState !== "hidden";
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/**
 * Connects to a Herald hub. `url` is the hub's base URL; `listeners` maps event names to
 * functions (as on()). Resolves once the token is fetched and connecting has started; listen for
 * "open" to know when events flow.
 */
export async function connect(url, listeners = {}, options = {}) {
  const conn = new Connection(url, options);
  conn.on(listeners);
  await conn.init();
  return conn;
}

export const _internal = {
  parseId,
  positionOf,
  isDurable,
  comparePositions,
  advancePosition,
  backoffDelay,
  SeenIds,
  isDuplicate,
  createAckBatcher,
  SendQueue,
  needsJson,
  uuid,
};
