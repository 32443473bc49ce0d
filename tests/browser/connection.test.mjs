// Token refresh on reconnect, and moving to another hub with switchUrl().
import assert from "node:assert/strict";
import { test } from "node:test";
import { openClient, received, waitOpen, waitReceived } from "./browser.mjs";
import { Hub, waitFor } from "./hub.mjs";
import { browser, hub, useHub } from "./setup.mjs";

useHub();

test("getToken() is called again on reconnect when the token expires", async () => {
  const context = await browser.newContext();
  let minted = 0;
  await context.exposeFunction("mintToken", () => {
    minted++;
    return hub.token("kim", { exp: Math.floor(Date.now() / 1000) + 2 });
  });
  const options = { reconnect: { initialDelay: 100, maxDelay: 500 } };
  const page = await openClient(context, hub, { mint: true, options });
  await waitOpen(page);
  const ids = [];
  ids.push((await hub.publish({ to: { users: ["kim"] }, event: "ALERT", data: "before" })).id);
  await waitReceived(page, 1);

  // The hub closes the stream when the token expires; the client must come back with a new one.
  const before = minted;
  await waitFor(() => minted >= before + 2, { timeout: 15_000, what: "two token refreshes" });
  await waitOpen(page);
  ids.push((await hub.publish({ to: { users: ["kim"] }, event: "ALERT", data: "after" })).id);
  await waitReceived(page, 2);
  assert.deepEqual((await received(page)).map((e) => e.id), ids);
  await context.close();
});

test("switchUrl() moves to another hub; its other history resets the position", async () => {
  const other = await Hub.start({ env: { HERALD_JWT_SECRET: hub.jwtSecret, HERALD_CORS_ORIGINS: "*" } });
  try {
    const context = await browser.newContext();
    const page = await openClient(context, hub, { token: hub.token("lou"), events: ["ALERT", "herald.reset"] });
    await waitOpen(page);
    const first = await hub.publish({ to: { users: ["lou"] }, event: "ALERT", data: "from A" });
    await waitReceived(page, 1);

    await page.evaluate((url) => window.conn.switchUrl(url), other.url);
    await page.waitForFunction(() => window.received.some((e) => e.event === "herald.reset"), null, { timeout: 10_000 });
    await waitOpen(page);
    const second = await other.publish({ to: { users: ["lou"] }, event: "ALERT", data: "from B" });
    await page.waitForFunction((id) => window.received.some((e) => e.id === id), second.id, { timeout: 10_000 });
    const alerts = (await received(page)).filter((e) => e.event === "ALERT").map((e) => e.id);
    assert.deepEqual(alerts, [first.id, second.id]);
    assert.equal((await page.evaluate(() => window.conn.position)).split("-")[0], second.id.split("-")[0]);
    await context.close();
  } finally {
    await other.dispose();
  }
});
