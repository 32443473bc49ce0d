// Publish to a user and read who is online, from a Node.js backend (built-in fetch, Node 18+).
//
//   HERALD_URL=http://127.0.0.1:8080 HERALD_API_KEY=... node publish_presence.mjs [user]

const HERALD_URL = process.env.HERALD_URL ?? "http://127.0.0.1:8080";
const API_KEY = process.env.HERALD_API_KEY;
if (!API_KEY) throw new Error("set HERALD_API_KEY");

// Calls Herald's backend API; an error answer is a problem document whose `detail` says what to fix.
async function herald(method, path, body) {
  const response = await fetch(new URL(path, HERALD_URL), {
    method,
    headers: { Authorization: `Bearer ${API_KEY}`, ...(body && { "Content-Type": "application/json" }) },
    body: body && JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    throw new Error(`${method} ${path}: ${response.status} ${problem.detail ?? response.statusText}`);
  }
  return response.json();
}

const user = process.argv[2] ?? "alice";

const sent = await herald("POST", "/api/publish", {
  to: { users: [user] },
  event: "ALERT",
  data: { text: "Hello from Node" },
});
console.log(`published ${sent.id} to ${sent.delivered} connection(s)`);

const online = await herald("GET", "/api/users?limit=100");
console.log(`online: ${online.users.map((u) => `${u.id} (${u.connections})`).join(", ") || "nobody"}`);

const one = await herald("GET", `/api/users/${encodeURIComponent(user)}`);
console.log(`${one.id} is ${one.online ? "online" : "offline"} with ${one.connections.length} connection(s)`);
