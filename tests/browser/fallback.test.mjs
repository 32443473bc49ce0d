// Long-poll fallback: without EventSource, and when the stream stays silent.
import assert from "node:assert/strict";
import { test } from "node:test";
import { openClient, received, waitOpen, waitReceived } from "./browser.mjs";
import { browser, hub, publishTo, useHub } from "./setup.mjs";

useHub();

test("without window.EventSource the client long-polls", async () => {
  const context = await browser.newContext();
  await context.addInitScript(() => delete window.EventSource);
  const page = await openClient(context, hub, { token: hub.token("fay"), options: { pollTimeout: 5 } });
  await waitOpen(page);
  assert.equal(await page.evaluate(() => window.conn.transport), "poll");

  const ids = [];
  await publishTo("fay", 3, ids);
  await waitReceived(page, 3);
  await publishTo("fay", 2, ids);
  await waitReceived(page, 5);
  assert.deepEqual((await received(page)).map((e) => e.id), ids);
  assert.deepEqual((await received(page)).map((e) => e.data), ["#0", "#1", "#2", "#3", "#4"]);
  await context.close();
});

test("a silent stream falls back to polling and switches back when streaming works", async () => {
  const context = await browser.newContext();
  // A proxy that swallows the stream: /events requests are held and never answered.
  const held = [];
  const holdEvents = (route) => held.push(route);
  await context.route(/\/events\?/, holdEvents);

  const options = { silenceTimeout: 1500, probeInterval: 1000, pollTimeout: 2 };
  const page = await openClient(context, hub, { token: hub.token("gus"), options });
  await page.waitForFunction(() => window.conn.transport === "poll" && window.conn.isActive(), null, { timeout: 10_000 });
  assert.ok(held.length >= 1, "the stream was attempted first");

  const ids = [];
  await publishTo("gus", 3, ids);
  await waitReceived(page, 3);

  await context.unroute(/\/events\?/, holdEvents);
  await page.waitForFunction(() => window.conn.transport === "sse", null, { timeout: 15_000 });
  await waitOpen(page);
  await publishTo("gus", 3, ids);
  await waitReceived(page, 6);
  assert.deepEqual((await received(page)).map((e) => e.id), ids, "nothing lost or doubled across the switch");
  const states = await page.evaluate(() => window.states.map((s) => `${s.state}:${s.state === "open" ? s.transport : s.reason}`));
  assert.deepEqual(states.slice(0, 2), ["reconnecting:silent", "open:poll"]);
  for (const route of held) await route.abort().catch(() => {});
  await context.close();
});
