// Mercure in a real browser: EventSource on /.well-known/mercure with the mercureAuthorization
// cookie, private updates, custom ids and resume, against the real hub.
import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { test } from "node:test";
import { waitFor } from "./hub.mjs";
import { browser, hub, useHub } from "./setup.mjs";

const publisherKey = randomBytes(24).toString("hex");
const subscriberKey = randomBytes(24).toString("hex");

useHub({
  store: "sqlite",
  env: {
    HERALD_MERCURE_PUBLISHER_JWT_KEY: publisherKey,
    HERALD_MERCURE_SUBSCRIBER_JWT_KEY: subscriberKey,
    HERALD_MERCURE_ANONYMOUS: "true",
  },
});

function sign(key, claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${head}.${createHmac("sha256", key).update(head).digest("base64url")}`;
}

async function publish(fields) {
  const body = new URLSearchParams(fields);
  const r = await fetch(`${hub.url}/.well-known/mercure`, {
    method: "POST",
    headers: { authorization: `Bearer ${sign(publisherKey, { mercure: { publish: ["*"] } })}` },
    body,
  });
  assert.equal(r.status, 200, await r.clone().text());
  assert.match(r.headers.get("content-type"), /^text\/plain/);
  return r.text();
}

/** A page on the hub's origin with an EventSource on `query`; events land in window.got. */
async function listen(context, query) {
  const page = await context.newPage();
  await page.goto(`${hub.url}/`);
  await page.evaluate((query) => {
    window.got = [];
    window.opened = false;
    const source = new EventSource(`/.well-known/mercure?${query}`);
    source.onopen = () => (window.opened = true);
    source.onmessage = (e) => window.got.push({ id: e.lastEventId, data: e.data });
    window.source = source;
  }, query);
  await page.waitForFunction(() => window.opened, null, { timeout: 10_000 });
  return page;
}

const got = (page) => page.evaluate(() => window.got);

/** Waits until the page has received an update whose data is `data`, and returns everything. */
async function until(page, data) {
  return waitFor(async () => {
    const events = await got(page);
    return events.some((e) => e.data === data) && events;
  }, { what: `update ${data}` });
}

test("the mercureAuthorization cookie lets EventSource receive private updates; anonymous pages get public ones", async () => {
  const topic = "https://example.com/books/1";
  const query = new URLSearchParams({ topic: "https://example.com/books/{id}" }).toString();
  const member = await browser.newContext();
  await member.addCookies([{
    name: "mercureAuthorization",
    value: sign(subscriberKey, { mercure: { subscribe: [topic] } }),
    url: hub.url,
    httpOnly: true,
  }]);
  const withCookie = await listen(member, query);
  const stranger = await browser.newContext();
  const anonymous = await listen(stranger, query);

  const secret = await publish({ topic, data: "secret", private: "on" });
  await publish({ topic: "https://example.com/books/2", data: "secret 2", private: "on" });
  const open = await publish({ topic, data: "public", id: "urn:uuid:public-1" });
  assert.equal(open, "urn:uuid:public-1");

  assert.deepEqual(await until(withCookie, "public"), [
    { id: secret, data: "secret" },
    { id: "urn:uuid:public-1", data: "public" },
  ]);
  assert.deepEqual(await until(anonymous, "public"), [{ id: "urn:uuid:public-1", data: "public" }]);
  await member.close();
  await stranger.close();
});

test("EventSource resumes from a custom id given as lastEventID", async () => {
  const topic = "https://example.com/resume";
  for (const id of ["urn:r:1", "urn:r:2", "urn:r:3"]) await publish({ topic, id, data: id });
  const context = await browser.newContext();
  const page = await listen(context, new URLSearchParams({ topic, lastEventID: "urn:r:1" }).toString());
  assert.deepEqual(await until(page, "urn:r:3"), [
    { id: "urn:r:2", data: "urn:r:2" },
    { id: "urn:r:3", data: "urn:r:3" },
  ]);
  // A restart drops the stream; EventSource reconnects with `Last-Event-ID: urn:r:3` and the
  // hub, which kept its history on disk, resumes after it: nothing lost, nothing twice.
  await hub.restart();
  await publish({ topic, id: "urn:r:4", data: "urn:r:4" });
  assert.deepEqual(await until(page, "urn:r:4"), [
    { id: "urn:r:2", data: "urn:r:2" },
    { id: "urn:r:3", data: "urn:r:3" },
    { id: "urn:r:4", data: "urn:r:4" },
  ]);
  await context.close();
});
