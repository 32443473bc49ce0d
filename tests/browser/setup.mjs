// One hub (and, when asked, a test backend for send()) and one browser per test file.
import { after, before } from "node:test";
import { launchBrowser } from "./browser.mjs";
import { Hub, startUpstream } from "./hub.mjs";

export let hub;
export let browser;
export let upstream;

/** Starts them before the file's tests and closes them after; `options` go to `Hub.start`. */
export function useHub({ withUpstream = false, ...options } = {}) {
  before(async () => {
    if (withUpstream) upstream = await startUpstream();
    hub = await Hub.start(upstream ? { ...options, upstreamUrl: upstream.url } : options);
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await hub?.dispose();
    await upstream?.close();
  });
}

/** Publishes `n` numbered ALERTs to `user` and pushes their ids onto `ids`. */
export async function publishTo(user, n, ids) {
  for (let i = 0; i < n; i++) {
    ids.push((await hub.publish({ to: { users: [user] }, event: "ALERT", data: `#${ids.length}` })).id);
  }
}
