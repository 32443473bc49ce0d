// The /demo page as a new user meets it: connect, receive, read.
import assert from "node:assert/strict";
import { test } from "node:test";
import { waitFor } from "./hub.mjs";
import { browser, hub, useHub } from "./setup.mjs";

useHub();

test("the demo shows messages, toasts and the unread badge, and clicking marks read", async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(`${hub.url}/demo?token=${hub.token("alice")}&key=${hub.apiKey}`);
  await page.waitForFunction(() => window.herald?.isActive());
  await page.locator("#users li", { hasText: "alice" }).waitFor();

  await hub.publish({ to: { users: ["alice"] }, event: "ALERT", data: { text: "Order #1042 was placed" }, durable: true });
  const item = page.locator("#messages li.unread", { hasText: "Order #1042 was placed" });
  await item.waitFor();
  await page.locator(".toast", { hasText: "Order #1042 was placed" }).waitFor();
  await page.locator("#badge", { hasText: "1" }).waitFor();

  await item.click();
  await page.locator("#badge").waitFor({ state: "hidden" });
  await waitFor(async () => (await hub.unread("alice")) === 0, { what: "the message to be read" });

  await page.click("#publish-form button[type=submit]");
  await page.locator("#messages li", { hasText: "Order #1042 was placed" }).nth(1).waitFor();
  assert.deepEqual(errors, []);
  await page.close();
});
