// The admin dashboard at /admin, driven in Chromium by its accessible roles and names.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ROOT, waitFor } from "./hub.mjs";
import { browser, hub, useHub } from "./setup.mjs";

const PASSWORD = `admin-${randomBytes(12).toString("hex")}`;
const HR_KEY = `hr-key-${randomBytes(12).toString("hex")}`;
const config = join(mkdtempSync(join(tmpdir(), "herald-admin-")), "herald.toml");
writeFileSync(config, `[[apps]]\nid = "hr"\napi_key = "${HR_KEY}"\njwt_secret = "${randomBytes(24).toString("hex")}"\n`);

useHub({ env: { HERALD_ADMIN_PASSWORD: PASSWORD }, args: ["--config", config] });

/** The binary embeds the dashboard at build time: testing a stale copy would test the wrong code. */
async function checkEmbeddedDashboard() {
  for (const file of ["index.html", "admin.js", "admin.css"]) {
    const path = file === "index.html" ? "/admin" : `/admin/${file}`;
    const served = await (await fetch(hub.url + path)).text();
    const source = readFileSync(join(ROOT, "crates/herald/src/http/admin/ui", file), "utf8");
    assert.equal(served, source, `the hub serves an older ${file}: rebuild it (cargo build -p herald-server)`);
  }
}

/** A subscriber stream read by Node: its text so far, and whether the hub ended it. */
async function subscribe(user, { claims = {}, channels = [] } = {}) {
  const query = new URLSearchParams({ access_token: hub.token(user, claims) });
  for (const channel of channels) query.append("channel", channel);
  const controller = new AbortController();
  const res = await fetch(`${hub.url}/events?${query}`, { signal: controller.signal });
  assert.equal(res.status, 200);
  const stream = { text: "", ended: false, close: () => controller.abort() };
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  stream.finished = (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        stream.text += decoder.decode(value, { stream: true });
      }
    } catch {
      // Aborted by the test.
    }
    stream.ended = true;
  })();
  await waitFor(() => stream.text.includes("herald.connected"), { what: `${user}'s stream to open` });
  return stream;
}

async function signIn(password) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  // The page runs under a strict CSP: anything it refuses is a bug in the page.
  page.on("console", (message) => {
    if (/Content Security Policy/i.test(message.text())) errors.push(message.text());
  });
  await page.goto(`${hub.url}/admin`);
  await page.getByLabel("Admin password or app API key").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  return { context, page, errors };
}

test("a wrong password is refused and the right one signs in", async () => {
  await checkEmbeddedDashboard();
  const { context, page, errors } = await signIn("not-the-password");
  await page.getByRole("alert").filter({ hasText: "neither the admin password nor an app's API key" }).waitFor();
  assert.equal(await page.getByRole("navigation").count(), 0);
  await page.getByLabel("Admin password or app API key").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("link", { name: "Users" }).waitFor();
  assert.match(await page.locator("#who").textContent(), /admin/);
  // The session survives a reload (the cookie), and signing out ends it.
  await page.reload();
  await page.getByRole("link", { name: "Users" }).waitFor();
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  await page.reload();
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  assert.deepEqual(errors, []);
  await context.close();
});

test("the overview shows a connected user, and its charts move by themselves", async () => {
  const alice = await subscribe("ov-alice");
  const { context, page, errors } = await signIn(PASSWORD);
  const nodes = page.getByRole("table", { name: "Nodes" });
  const row = nodes.getByRole("row").filter({ hasText: "(this node)" });
  await row.waitFor();
  // Columns: node, version, uptime, connections, users.
  await waitFor(async () => (await row.getByRole("cell").nth(4).textContent()) === "1", { what: "one user on the node" });
  assert.equal(await row.getByRole("cell").nth(3).textContent(), "1");
  assert.match(await row.getByRole("cell").nth(8).textContent(), /memory: ok/);
  // The connections chart's current value comes from the sample stream, not from the table.
  await waitFor(async () => (await page.locator("#now-connections").textContent()) === "1", { what: "the chart to show 1" });
  alice.close();
  await waitFor(async () => (await page.locator("#now-connections").textContent()) === "0", { what: "the chart to follow" });
  assert.deepEqual(errors, []);
  await context.close();
});

test("users are searched by id, tenant and channel", async () => {
  const streams = [
    await subscribe("search-alice", { claims: { tenant: "acme" }, channels: ["news"] }),
    await subscribe("search-bob", { claims: { tenant: "globex" } }),
  ];
  const { context, page, errors } = await signIn(PASSWORD);
  await page.getByRole("link", { name: "Users" }).click();
  const users = page.locator("#users tbody tr[data-user]");
  const search = async (fields) => {
    const main = page.getByRole("main");
    for (const [label, value] of Object.entries(fields)) await main.getByLabel(label, { exact: true }).fill(value);
    await page.getByRole("button", { name: "Search", exact: true }).click();
  };
  await search({ "Search users": "search-" });
  await waitFor(async () => (await users.count()) === 2, { what: "both users" });
  await search({ "Search users": "ALI" });
  await waitFor(async () => (await users.allTextContents()).join() .includes("search-alice") && (await users.count()) === 1, { what: "alice alone" });
  await search({ "Search users": "", Tenant: "globex" });
  await waitFor(async () => (await users.count()) === 1 && (await users.first().getAttribute("data-user")) === "search-bob", { what: "bob by tenant" });
  await search({ Tenant: "", Channel: "news" });
  await waitFor(async () => (await users.count()) === 1 && (await users.first().getAttribute("data-user")) === "search-alice", { what: "alice by channel" });
  // A user's connections, with their details.
  const row = page.locator("tr[data-user=search-alice]");
  await row.getByRole("button", { name: "Connections" }).click();
  const details = page.getByRole("table", { name: "Connections" });
  await details.getByRole("cell", { name: "acme", exact: true }).waitFor();
  await details.getByRole("cell", { name: "news", exact: true }).waitFor();
  for (const stream of streams) stream.close();
  assert.deepEqual(errors, []);
  await context.close();
});

test("Kick in the users page closes the user's stream with the reason", async () => {
  const stream = await subscribe("kick-carol");
  const other = await subscribe("kick-dave");
  const { context, page, errors } = await signIn(PASSWORD);
  await page.getByRole("link", { name: "Users" }).click();
  await page.getByRole("searchbox", { name: "Search users" }).fill("kick-");
  await page.getByRole("button", { name: "Search", exact: true }).click();
  const row = page.getByRole("row").filter({ hasText: "kick-carol" });
  await row.getByRole("button", { name: "Kick" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByLabel("Reason (optional)").fill("maintenance");
  await dialog.getByRole("button", { name: "Confirm kick" }).click();
  await waitFor(() => stream.ended, { what: "the kicked stream to end" });
  assert.match(stream.text, /event: herald.kicked\ndata: {"reason":"maintenance"}/);
  await page.getByRole("alert").filter({ hasText: "Kicked 1 connection(s) of kick-carol" }).waitFor();
  await waitFor(async () => (await page.locator("tr[data-user]").count()) === 1, { what: "carol to leave the list" });
  assert.equal(other.ended, false, "only the kicked user's stream ends");

  // One connection's own Kick button.
  await page.locator("tr[data-user=kick-dave]").getByRole("button", { name: "Connections" }).click();
  await page.getByRole("table", { name: "Connections" }).getByRole("button", { name: "Kick" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Confirm kick" }).click();
  await waitFor(() => other.ended, { what: "the kicked connection to end" });
  assert.deepEqual(errors, []);
  await context.close();
});

test("Publish reaches a subscriber and shows the answer", async () => {
  const stream = await subscribe("pub-erin", { channels: ["orders"] });
  const { context, page, errors } = await signIn(PASSWORD);
  await page.getByRole("link", { name: "Publish" }).click();
  const form = page.getByRole("main");
  await form.getByLabel("Channels", { exact: true }).fill("orders");
  await form.getByLabel("Event", { exact: true }).fill("ALERT");
  await form.getByLabel("Data", { exact: true }).fill('{"text": "from the dashboard"}');
  await page.getByRole("button", { name: "Publish" }).click();
  const result = page.getByRole("status", { name: "Publish result" });
  await result.getByText("Delivered").waitFor();
  assert.equal(await result.locator("[data-field=delivered]").textContent(), "1");
  const id = await result.locator("[data-field=id]").textContent();
  await waitFor(() => stream.text.includes(`id: ${id}\nevent: ALERT\ndata: {"text":"from the dashboard"}`), { what: "the message" });

  // The channel page lists it, with its history and live traffic.
  await page.getByRole("link", { name: "Channels" }).click();
  await page.getByRole("button", { name: "Open orders" }).click();
  await page.locator("#channel-history li", { hasText: "from the dashboard" }).waitFor();
  await hub.publish({ to: { channels: ["orders"] }, event: "ALERT", data: "live one" });
  await page.getByRole("log").getByText("live one").waitFor();
  stream.close();
  assert.deepEqual(errors, []);
  await context.close();
});

test("the inbox shows a user's durable messages and acknowledges them", async () => {
  const { id } = await hub.publish({ to: { users: ["inbox-fay"] }, event: "ALERT", data: "keep me", durable: true });
  const { context, page, errors } = await signIn(PASSWORD);
  await page.getByRole("link", { name: "Inbox" }).click();
  await page.getByLabel("User id").fill("inbox-fay");
  await page.getByRole("button", { name: "Show messages" }).click();
  await page.getByText("inbox-fay has 1 unread message(s).").waitFor();
  await page.locator(`tr[data-id="${id}"]`).getByRole("button", { name: "Acknowledge" }).click();
  await page.getByText("inbox-fay has 0 unread message(s).").waitFor();
  assert.equal(await hub.unread("inbox-fay"), 0);
  assert.deepEqual(errors, []);
  await context.close();
});

test("another app's key sees nothing of the first app", async () => {
  const stream = await subscribe("secret-gina", { channels: ["payroll"] });
  const { context, page, errors } = await signIn(HR_KEY);
  await page.getByRole("link", { name: "Users" }).waitFor();
  assert.deepEqual(await page.locator("#app-select option").allTextContents(), ["hr"]);
  assert.deepEqual(await page.getByRole("table", { name: "Apps" }).locator("tbody td:first-child").allTextContents(), ["hr"]);
  await page.getByRole("link", { name: "Users" }).click();
  await page.getByText("0 users online match.").waitFor();
  await page.getByRole("link", { name: "Channels" }).click();
  await page.getByText("No channel has subscribers.").waitFor();
  // Asked directly, with the session's own CSRF token, the first app does not exist for it.
  const answers = await page.evaluate(async () => {
    const { csrf } = await (await fetch("admin/api/session")).json();
    const get = (path) => fetch(`admin/api/${path}`).then((r) => r.status);
    const post = (path, body) => fetch(`admin/api/${path}`, { method: "POST", headers: { "Content-Type": "application/json", "X-Herald-CSRF": csrf }, body: JSON.stringify(body) }).then((r) => r.status);
    return [
      await get("apps/default/users"),
      await get("apps/default/channels"),
      await get("overview?app=default"),
      await post("apps/default/users/secret-gina/kick", {}),
      await post("apps/default/publish", { to: { all: true }, data: "x" }),
    ];
  });
  assert.deepEqual(answers, [404, 404, 404, 404, 404]);
  assert.equal(stream.ended, false);
  assert.equal(stream.text.includes("data: x"), false);
  stream.close();
  assert.deepEqual(errors, []);
  await context.close();
});
