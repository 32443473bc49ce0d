// Browser helpers: Debian's chromium through playwright-core, and a page running herald.js.
import { chromium } from "playwright-core";

export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_BIN ?? "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/**
 * Opens a same-origin page on the hub and connects herald.js in it. The page records every
 * event of `events` in window.received and every state change in window.states; the
 * Connection is window.conn. With `mint`, tokens come from getToken() calling
 * window.mintToken, which the test exposes.
 */
export async function openClient(context, hub, { token, options = {}, events = ["message", "ALERT"], mint = false } = {}) {
  const page = await context.newPage();
  page.on("pageerror", (error) => console.error(`[page] ${error.message}`));
  await page.goto(`${hub.url}/healthz`);
  await page.evaluate(
    async ({ token, options, events, mint }) => {
      const herald = await import("/herald.js");
      window.received = [];
      window.states = [];
      window.unreadCounts = [];
      const listeners = {};
      for (const name of events) {
        listeners[name] = (e) => window.received.push({ id: e.id, event: e.event, data: e.data });
      }
      for (const state of ["open", "reconnecting", "closed"]) {
        listeners[state] = (info) => window.states.push({ state, ...info });
      }
      window.conn = await herald.connect(location.origin, listeners, {
        ...(mint ? { getToken: () => window.mintToken() } : { token }),
        onUnread: (n) => window.unreadCounts.push(n),
        ...options,
      });
    },
    { token, options, events, mint },
  );
  return page;
}

export function waitOpen(page, timeout = 10_000) {
  return page.waitForFunction(() => window.conn?.isActive(), null, { timeout });
}

export function waitReceived(page, count, timeout = 10_000) {
  return page.waitForFunction((n) => window.received.length >= n, count, { timeout });
}

export function received(page) {
  return page.evaluate(() => window.received);
}
