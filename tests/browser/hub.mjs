// Test helpers: the real `herald` binary, a test upstream, JWTs and condition waits.
import { spawn } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { once } from "node:events";
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const HERALD_BIN = process.env.HERALD_BIN ?? join(ROOT, "target/debug/herald");

/** Polls `check` until it returns a truthy value; throws with `what` after `timeout` ms. */
export async function waitFor(check, { timeout = 10_000, interval = 50, what = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? `: ${last.message}` : ""}`);
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

export async function freePort() {
  const server = createNetServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  server.close();
  await once(server, "close");
  return port;
}

const secret = () => randomBytes(24).toString("hex");
const b64url = (value) => Buffer.from(value).toString("base64url");

export class Hub {
  #child = null;
  #dir;
  #log;

  /** store: "memory" or "sqlite" (a temp file that survives restart()); args: more `serve` flags. */
  constructor({ store = "memory", upstreamUrl, env = {}, args = [] } = {}) {
    this.args = args;
    this.apiKey = secret();
    this.jwtSecret = secret();
    this.upstreamSecret = secret();
    this.#dir = mkdtempSync(join(tmpdir(), "herald-test-"));
    this.#log = join(this.#dir, "hub.log");
    this.env = {
      HERALD_API_KEY: this.apiKey,
      HERALD_JWT_SECRET: this.jwtSecret,
      HERALD_UPSTREAM_SECRET: this.upstreamSecret,
      HERALD_HEARTBEAT_SECS: "1",
      HERALD_STORE: store,
      ...(store === "sqlite" ? { HERALD_STORE_PATH: join(this.#dir, "herald.db") } : {}),
      ...(upstreamUrl ? { HERALD_UPSTREAM_URL: upstreamUrl } : {}),
      ...env,
    };
  }

  static async start(options) {
    const hub = new Hub(options);
    hub.port = await freePort();
    hub.url = `http://127.0.0.1:${hub.port}`;
    await hub.start();
    await hub.#checkEmbeddedClient();
    return hub;
  }

  // The binary embeds client/ at build time: testing a stale copy would test the wrong code.
  async #checkEmbeddedClient() {
    for (const [path, file] of [["/herald.js", "herald.js"], ["/herald.d.ts", "herald.d.ts"], ["/demo", "demo.html"]]) {
      const served = await (await fetch(this.url + path)).text();
      if (served !== readFileSync(join(ROOT, "client", file), "utf8")) {
        await this.dispose();
        throw new Error(`${HERALD_BIN} serves an older client/${file}: rebuild it (cargo build -p herald-server)`);
      }
    }
  }

  async start() {
    const out = createWriteStream(this.#log, { flags: "a" });
    await once(out, "open");
    this.#child = spawn(HERALD_BIN, ["serve", ...this.args], {
      env: { ...process.env, ...this.env, HERALD_LISTEN: `127.0.0.1:${this.port}` },
      stdio: ["ignore", out, out],
    });
    const exited = once(this.#child, "exit").then(([code]) => {
      throw new Error(`herald exited with ${code}\n${this.logTail()}`);
    });
    exited.catch(() => {});
    const healthy = waitFor(
      async () => (await fetch(`${this.url}/healthz`)).ok,
      { timeout: 20_000, what: `${this.url}/healthz` },
    );
    try {
      await Promise.race([healthy, exited]);
    } catch (error) {
      error.message += `\n${this.logTail()}`;
      throw error;
    }
  }

  async stop() {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }

  async restart() {
    await this.stop();
    await this.start();
  }

  async dispose() {
    await this.stop();
    rmSync(this.#dir, { recursive: true, force: true });
  }

  logTail(lines = 40) {
    try {
      return readFileSync(this.#log, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }

  /** An HS256 subscriber token for `sub`. */
  token(sub, claims = {}) {
    const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
    const exp = Math.floor(Date.now() / 1000) + 3600;
    const payload = b64url(JSON.stringify({ sub, channels: ["*"], exp, ...claims }));
    const signature = createHmac("sha256", this.jwtSecret).update(`${header}.${payload}`).digest("base64url");
    return `${header}.${payload}.${signature}`;
  }

  /** A backend API call with the API key; returns the parsed JSON answer. */
  async api(method, path, body) {
    const res = await fetch(this.url + path, {
      method,
      headers: { Authorization: `Bearer ${this.apiKey}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path} answered ${res.status}: ${text}`);
    return JSON.parse(text);
  }

  publish(body) {
    return this.api("POST", "/api/publish", body);
  }

  async connections(user) {
    const answer = await this.api("GET", `/api/users/${encodeURIComponent(user)}`);
    return answer.connections.length;
  }

  async unread(user) {
    return (await this.api("GET", `/api/users/${encodeURIComponent(user)}/unread`)).unread;
  }
}

/** A backend behind POST /send: records every request and answers 200 with an echo. */
export async function startUpstream() {
  const requests = [];
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks).toString("utf8");
    requests.push({ method: req.method, url: req.url, headers: req.headers, body });
    res.writeHead(200, { "Content-Type": "application/json", "X-Upstream": "yes" });
    res.end(JSON.stringify({ ok: true, path: req.url, user: req.headers["x-herald-user"] ?? null }));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** Checks X-Herald-Signature of a recorded request against PROTOCOL.md; returns the reason it is wrong, or null. */
export function signatureProblem(request, secretKey) {
  const h = (name) => request.headers[`x-herald-${name}`] ?? "";
  const [path, query = ""] = request.url.split(/\?(.*)/s);
  const signed = [h("timestamp"), h("app"), h("user"), h("tenant"), h("session"), h("connection"), request.method, path, query].join("\n");
  const expected = `sha256=${createHmac("sha256", secretKey).update(signed).digest("hex")}`;
  if (h("signature") !== expected) return `signature ${h("signature")} != ${expected} over ${JSON.stringify(signed)}`;
  const age = Math.abs(Date.now() / 1000 - Number(h("timestamp")));
  return age < 60 ? null : `timestamp ${h("timestamp")} is ${age} s off`;
}
