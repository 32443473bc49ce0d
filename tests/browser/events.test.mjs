// Delivery, acknowledgement and browser-to-backend calls against the real hub.
import assert from "node:assert/strict";
import { test } from "node:test";
import { openClient, received, waitOpen, waitReceived } from "./browser.mjs";
import { signatureProblem, waitFor } from "./hub.mjs";
import { browser, hub, upstream, useHub } from "./setup.mjs";

useHub({ withUpstream: true });

test("published events reach listeners, named and unnamed, in order", async () => {
  const context = await browser.newContext();
  const page = await openClient(context, hub, {
    token: hub.token("alice"),
    options: { channels: ["orders.1"] },
    events: ["message", "ALERT", "orders"],
  });
  await waitOpen(page);
  const info = await page.evaluate(() => ({ user: window.conn.user, id: window.conn.connectionId }));
  assert.equal(info.user, "alice");
  assert.ok(info.id, "herald.connected gave a connection id");

  const a = await hub.publish({ to: { users: ["alice"] }, event: "ALERT", data: { text: "hi" } });
  const b = await hub.publish({ to: { users: ["alice"] }, data: "plain" });
  const c = await hub.publish({ to: { channels: ["orders.1"] }, event: "orders", data: [1, 2] });
  await waitReceived(page, 3);
  assert.deepEqual(await received(page), [
    { id: a.id, event: "ALERT", data: '{"text":"hi"}' },
    { id: b.id, event: "message", data: "plain" },
    { id: c.id, event: "orders", data: "[1,2]" },
  ]);
  await context.close();
});

test("durable events are acknowledged automatically, live and from the backlog", async () => {
  const user = "bob";
  const backlog = await hub.publish({ to: { users: [user] }, event: "ALERT", data: "while away", durable: true });
  assert.match(backlog.id, /-d$/);
  assert.equal(await hub.unread(user), 1);

  const context = await browser.newContext();
  const page = await openClient(context, hub, { token: hub.token(user) });
  await waitReceived(page, 1);
  const live = await hub.publish({ to: { users: [user] }, event: "ALERT", data: "live", durable: true });
  await waitReceived(page, 2);
  assert.deepEqual((await received(page)).map((e) => e.id), [backlog.id, live.id]);

  await waitFor(async () => (await hub.unread(user)) === 0, { what: "unread count 0" });
  await page.waitForFunction(() => window.unreadCounts.at(-1) === 0);
  await context.close();
});

test("send() and upload() reach the upstream with identity headers and a valid signature", async () => {
  const context = await browser.newContext();
  const page = await openClient(context, hub, { token: hub.token("carol", { tenant: "acme", sid: "s1" }) });
  await waitOpen(page);
  const answer = await page.evaluate(async () => {
    const res = await window.conn.send("orders/new", { item: 7 }, { query: { dry: "1" }, headers: { "X-Trace": "t1" } });
    return { status: res.status, body: await res.json(), upstream: res.headers.get("X-Upstream") };
  });
  assert.deepEqual(answer, { status: 200, body: { ok: true, path: "/orders/new?dry=1", user: "carol" }, upstream: "yes" });

  const connectionId = await page.evaluate(() => window.conn.connectionId);
  const sent = upstream.requests.find((r) => r.url === "/orders/new?dry=1");
  assert.equal(sent.method, "POST");
  assert.equal(sent.body, '{"item":7}');
  assert.equal(sent.headers["content-type"], "application/json");
  assert.equal(sent.headers["x-trace"], "t1");
  assert.equal(sent.headers["x-herald-user"], "carol");
  assert.equal(sent.headers["x-herald-tenant"], "acme");
  assert.equal(sent.headers["x-herald-session"], "s1");
  assert.equal(sent.headers["x-herald-app"], "default");
  assert.equal(sent.headers["x-herald-connection"], connectionId);
  assert.match(sent.headers["idempotency-key"], /^[0-9a-f-]{36}$/);
  assert.equal(signatureProblem(sent, hub.upstreamSecret), null);
  assert.equal(sent.headers.authorization, undefined, "the user's token is not forwarded");

  const status = await page.evaluate(async () => {
    const form = new FormData();
    form.append("note", "scan");
    form.append("file", new Blob(["%PDF-1.7 hello"], { type: "application/pdf" }), "scan.pdf");
    return (await window.conn.upload("files", form)).status;
  });
  assert.equal(status, 200);
  const uploaded = upstream.requests.find((r) => r.url === "/files");
  assert.match(uploaded.headers["content-type"], /^multipart\/form-data; boundary=/);
  assert.match(uploaded.body, /filename="scan.pdf"/);
  assert.match(uploaded.body, /%PDF-1.7 hello/);
  assert.equal(uploaded.headers["x-herald-user"], "carol");
  assert.equal(signatureProblem(uploaded, hub.upstreamSecret), null);
  assert.notEqual(uploaded.headers["idempotency-key"], sent.headers["idempotency-key"]);
  await context.close();
});
