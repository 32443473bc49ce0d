// Takes the screenshots of docs/ADMIN.md: a hub with some traffic, and each dashboard page in
// Chromium. Run after `cargo build -p herald-server`:  node tests/browser/admin-screenshots.mjs
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { launchBrowser } from "./browser.mjs";
import { Hub, ROOT, waitFor } from "./hub.mjs";

const PASSWORD = "screenshot-admin-password";
const config = join(mkdtempSync(join(tmpdir(), "herald-shots-")), "herald.toml");
writeFileSync(config, `[[apps]]\nid = "hr"\napi_key = "hr-api-key-for-screenshots"\njwt_secret = "hr-jwt-secret-for-screenshots"\n`);
const hub = await Hub.start({ env: { HERALD_ADMIN_PASSWORD: PASSWORD }, args: ["--config", config] });
const browser = await launchBrowser();
const streams = [];

async function subscribe(user, claims, channels) {
  const query = new URLSearchParams({ access_token: hub.token(user, claims), client_id: "web" });
  for (const channel of channels) query.append("channel", channel);
  const controller = new AbortController();
  const res = await fetch(`${hub.url}/events?${query}`, { signal: controller.signal, headers: { "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/156" } });
  res.body.pipeTo(new WritableStream()).catch(() => {});
  streams.push(controller);
}

const shot = (page, name) => page.screenshot({ path: join(ROOT, "docs", `admin-${name}.png`) });

try {
  for (const [user, tenant, channels, copies] of [
    ["alice", "acme", ["news", "orders"], 2],
    ["bob", "acme", ["orders"], 1],
    ["carol", "globex", ["news"], 1],
    ["dave", "globex", ["orders", "billing"], 1],
    ["erin", "initech", ["news"], 3],
  ]) {
    for (let i = 0; i < copies; i++) await subscribe(user, { tenant, sid: `${user}-s${i}` }, channels);
  }
  for (const text of ["Invoice #1042 is due", "Your export is ready", "Password changed"]) {
    await hub.publish({ to: { users: ["alice"] }, event: "ALERT", data: { text }, durable: true });
  }
  let n = 0;
  const traffic = setInterval(() => {
    n++;
    hub.publish({ to: { channels: [n % 3 ? "orders" : "news"] }, event: "ORDER", data: { order: 1000 + n, total: (n * 7.3).toFixed(2) } }).catch(() => {});
    if (n % 4 === 0) hub.publish({ to: { tenants: ["acme"] }, data: "ping" }).catch(() => {});
  }, 150);

  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.goto(`${hub.url}/admin`);
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  await shot(page, "signin");
  await page.getByLabel("Admin password or app API key").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("table", { name: "Nodes" }).getByRole("row").filter({ hasText: "this node" }).waitFor();
  // Let the charts fill for a while.
  await waitFor(async () => (await page.evaluate(() => document.querySelector("#now-publishes").textContent)) !== "—", { what: "samples" });
  await new Promise((resolve) => setTimeout(resolve, 40_000));
  await shot(page, "overview");

  await page.getByRole("link", { name: "Users" }).click();
  await page.locator("tr[data-user=alice]").getByRole("button", { name: "Connections" }).click();
  await page.getByRole("table", { name: "Connections" }).waitFor();
  await shot(page, "users");

  await page.getByRole("link", { name: "Channels" }).click();
  await page.getByRole("button", { name: "Open orders" }).click();
  await waitFor(async () => (await page.locator("#channel-live li").count()) > 8, { what: "live traffic" });
  await shot(page, "channels");

  await page.getByRole("link", { name: "Publish" }).click();
  const form = page.getByRole("main");
  await form.getByLabel("Users", { exact: true }).fill("alice, bob");
  await form.getByLabel("Channels", { exact: true }).fill("news");
  await form.getByLabel("Event", { exact: true }).fill("ALERT");
  await form.getByLabel("Data", { exact: true }).fill('{"text": "Maintenance at 22:00 UTC"}');
  await form.getByLabel("Durable (kept until acknowledged)").check();
  await form.getByLabel("TTL in seconds").fill("3600");
  await page.getByRole("button", { name: "Publish" }).click();
  await page.locator("[data-field=delivered]").waitFor();
  await shot(page, "publish");

  await page.getByRole("link", { name: "Inbox" }).click();
  await page.getByLabel("User id").fill("alice");
  await page.getByLabel("Show").selectOption("all");
  await page.getByRole("button", { name: "Show messages" }).click();
  await page.locator("#inbox tbody tr").first().waitFor();
  await shot(page, "inbox");
  clearInterval(traffic);
  await context.close();
} finally {
  for (const controller of streams) controller.abort();
  await browser.close();
  await hub.dispose();
}
