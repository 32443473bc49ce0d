// The hub goes away and comes back on the same sqlite store: nothing is lost or doubled.
import assert from "node:assert/strict";
import { test } from "node:test";
import { openClient, received, waitOpen, waitReceived } from "./browser.mjs";
import { signatureProblem } from "./hub.mjs";
import { browser, hub, upstream, useHub } from "./setup.mjs";

useHub({ store: "sqlite", withUpstream: true });

const fast = { reconnect: { initialDelay: 200, maxDelay: 1000 } };

const waitState = (page, state) =>
  page.waitForFunction((s) => window.conn.state === s, state, { timeout: 15_000 });

test("after a hub restart the client resumes from its last id", async () => {
  const context = await browser.newContext();
  const page = await openClient(context, hub, { token: hub.token("dora"), options: fast });
  await waitOpen(page);
  const ids = [];
  const publish = async (n) => {
    for (let i = 0; i < n; i++) {
      ids.push((await hub.publish({ to: { users: ["dora"] }, event: "ALERT", data: `#${ids.length}` })).id);
    }
  };
  await publish(3);
  await waitReceived(page, 3);

  await hub.stop();
  await waitState(page, "reconnecting");
  await hub.start();
  // Published before the client is back (it is in backoff): only a resume can deliver these.
  await publish(3);
  await waitState(page, "open");
  await publish(2);
  await waitReceived(page, 8, 15_000);

  const got = (await received(page)).map((e) => e.id);
  assert.deepEqual(got, ids, "every event once, in order");
  assert.equal(ids[0].split("-")[0], ids[7].split("-")[0], "the sqlite store kept the epoch");
  await context.close();
});

test("a send made while the hub is down is delivered once it is back", async () => {
  const context = await browser.newContext();
  const page = await openClient(context, hub, { token: hub.token("eve"), options: fast });
  await waitOpen(page);

  await hub.stop();
  await waitState(page, "reconnecting");
  await page.evaluate(() => {
    window.sendResult = null;
    window.conn.send("offline-order", { n: 1 }).then(
      async (res) => (window.sendResult = { status: res.status, body: await res.json() }),
      (error) => (window.sendResult = { error: String(error) }),
    );
  });
  await hub.start();
  await page.waitForFunction(() => window.sendResult, null, { timeout: 15_000 });
  assert.deepEqual(await page.evaluate(() => window.sendResult), {
    status: 200,
    body: { ok: true, path: "/offline-order", user: "eve" },
  });
  const delivered = upstream.requests.filter((r) => r.url === "/offline-order");
  assert.equal(delivered.length, 1);
  assert.equal(delivered[0].body, '{"n":1}');
  assert.equal(delivered[0].headers["x-herald-connection"], await page.evaluate(() => window.conn.connectionId));
  assert.equal(signatureProblem(delivered[0], hub.upstreamSecret), null);
  await context.close();
});
