// Tabs share one hub connection; the visibility policy drops and restores it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { openClient, received, waitOpen, waitReceived } from "./browser.mjs";
import { waitFor } from "./hub.mjs";
import { browser, hub, publishTo, useHub } from "./setup.mjs";

useHub();

const role = (page) => page.evaluate(() => window.conn.role);

test("two tabs share one connection and hand it over without losing or doubling events", async () => {
  const user = "hana";
  const context = await browser.newContext();
  const options = { reconnect: { initialDelay: 100, maxDelay: 500 } };
  const first = await openClient(context, hub, { token: hub.token(user), options });
  await waitOpen(first);
  const second = await openClient(context, hub, { token: hub.token(user), options });
  await waitOpen(second);
  assert.equal(await role(first), "leader");
  assert.equal(await role(second), "follower");
  assert.equal(await hub.connections(user), 1, "one hub connection for two tabs");

  const ids = [];
  await publishTo(user, 3, ids);
  await waitReceived(first, 3);
  await waitReceived(second, 3);
  assert.deepEqual((await received(first)).map((e) => e.id), ids);
  assert.deepEqual((await received(second)).map((e) => e.id), ids);

  // Close the leader while events keep coming.
  const closing = first.close({ runBeforeUnload: false });
  await publishTo(user, 3, ids);
  await closing;
  await publishTo(user, 3, ids);
  await waitFor(() => role(second).then((r) => r === "leader"), { what: "the follower to take the lock" });
  await waitOpen(second);
  await publishTo(user, 2, ids);
  await waitReceived(second, ids.length, 15_000);
  assert.deepEqual((await received(second)).map((e) => e.id), ids, "every event exactly once, in order");
  await waitFor(async () => (await hub.connections(user)) === 1, { what: "one connection after handover" });
  await context.close();
});

test("a follower tab knows the shared connection id, for X-Herald-Connection on its sends", async () => {
  const user = "ivan";
  const context = await browser.newContext();
  const first = await openClient(context, hub, { token: hub.token(user) });
  const second = await openClient(context, hub, { token: hub.token(user) });
  await waitOpen(first);
  await waitOpen(second);
  assert.equal(await role(second), "follower");
  const leaderConnection = await first.evaluate(() => window.conn.connectionId);
  assert.equal(await second.evaluate(() => window.conn.connectionId), leaderConnection);
  await context.close();
});

const setVisibility = (page, state) =>
  page.evaluate((s) => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => s });
    Object.defineProperty(document, "hidden", { configurable: true, get: () => s === "hidden" });
    document.dispatchEvent(new Event("visibilitychange"));
  }, state);

test("hidden tabs drop the connection after hiddenTimeout and resume when visible", async () => {
  const user = "jules";
  const context = await browser.newContext();
  const options = { hiddenTimeout: 300, reconnect: { initialDelay: 100, maxDelay: 500 } };
  const first = await openClient(context, hub, { token: hub.token(user), options });
  const second = await openClient(context, hub, { token: hub.token(user), options });
  await waitOpen(first);
  await waitOpen(second);
  assert.equal(await hub.connections(user), 1);

  await setVisibility(first, "hidden");
  await setVisibility(second, "hidden");
  await waitFor(async () => (await hub.connections(user)) === 0, { what: "the connection to drop" });
  await first.waitForFunction(() => window.states.at(-1)?.reason === "hidden");
  await second.waitForFunction(() => window.conn.state === "reconnecting");

  const ids = [];
  await publishTo(user, 2, ids);
  await setVisibility(second, "visible");
  await waitOpen(first);
  await waitOpen(second);
  await waitFor(async () => (await hub.connections(user)) === 1, { what: "the connection to come back" });
  await waitReceived(first, 2);
  await waitReceived(second, 2);
  assert.deepEqual((await received(second)).map((e) => e.id), ids, "events published while hidden arrive");
  await context.close();
});
