// Pure logic of herald.js, run in Node without a DOM.
import assert from "node:assert/strict";
import { test } from "node:test";
import { _internal, VERSION } from "../../client/herald.js";

const {
  parseId,
  positionOf,
  comparePositions,
  advancePosition,
  backoffDelay,
  SeenIds,
  isDuplicate,
  createAckBatcher,
  SendQueue,
  needsJson,
  uuid,
} = _internal;

test("VERSION is semver", () => assert.match(VERSION, /^\d+\.\d+\.\d+$/));

test("parseId reads epoch, seq and the durable suffix", () => {
  assert.deepEqual(parseId("q3k9zt-42"), { epoch: "q3k9zt", seq: 42n, durable: false });
  assert.deepEqual(parseId("q3k9zt-43-d"), { epoch: "q3k9zt", seq: 43n, durable: true });
  assert.equal(parseId("q3k9zt"), null);
  assert.equal(parseId("q3k9zt-x"), null);
  assert.equal(parseId(""), null);
  assert.equal(parseId(undefined), null);
  assert.equal(positionOf("q3k9zt-43-d"), "q3k9zt-43");
});

test("positions compare by the integer, not the string", () => {
  assert.equal(comparePositions("e-9", "e-10"), -1);
  assert.equal(comparePositions("e-10", "e-9"), 1);
  assert.equal(comparePositions("e-10-d", "e-10"), 0);
  assert.equal(comparePositions("e-18446744073709551615", "e-18446744073709551614"), 1);
  assert.equal(comparePositions("a-1", "b-2"), null, "different epochs do not compare");
  assert.equal(comparePositions("junk", "e-1"), null);
});

test("the position only moves forward, except on a new epoch", () => {
  assert.equal(advancePosition(null, "e-5"), "e-5");
  assert.equal(advancePosition("e-5", "e-6"), "e-6");
  assert.equal(advancePosition("e-17", "e-3-d"), "e-17", "durable backlog is older");
  assert.equal(advancePosition("e-17", "e-18-d"), "e-18", "a live durable message moves it");
  assert.equal(advancePosition("e-17", "f-2"), "f-2", "new epoch resets");
  assert.equal(advancePosition("e-17", "junk"), "e-17");
});

test("backoff grows exponentially, is capped, and jitters within [base/2, base]", () => {
  const cfg = { initialDelay: 100, maxDelay: 5000 };
  for (let attempt = 0; attempt < 12; attempt++) {
    const base = Math.min(5000, 100 * 2 ** attempt);
    assert.equal(backoffDelay(attempt, cfg, () => 0), base / 2);
    assert.equal(backoffDelay(attempt, cfg, () => 0.999999), base / 2 + 0.999999 * (base / 2));
    const d = backoffDelay(attempt, cfg);
    assert.ok(d >= base / 2 && d <= base, `attempt ${attempt}: ${d}`);
  }
  assert.equal(backoffDelay(10_000, cfg, () => 1), 5000, "huge attempts stay finite");
});

test("dedupe: seen ids, old non-durable ids, and durable backlog", () => {
  const seen = new SeenIds(3);
  seen.add("e-5-d");
  assert.ok(isDuplicate("e-5", "e-9", seen), "a position is seen with or without -d");
  assert.ok(isDuplicate("e-5-d", "e-9", seen));
  assert.ok(isDuplicate("e-8", "e-9", seen), "non-durable at or behind the position is old");
  assert.ok(isDuplicate("e-9", "e-9", seen));
  assert.ok(!isDuplicate("e-10", "e-9", seen));
  assert.ok(!isDuplicate("e-3-d", "e-9", seen), "unseen durable backlog is delivered");
  assert.ok(!isDuplicate("f-1", "e-9", seen), "another epoch is not compared");
  assert.ok(!isDuplicate("e-1", null, seen));
  for (const id of ["e-6", "e-7", "e-8"]) seen.add(id);
  assert.ok(!seen.has("e-5"), "the oldest entry is evicted past the limit");
  assert.ok(seen.has("e-8"));
  seen.add("junk-a");
  assert.ok(seen.has("junk-a") && !seen.has("junk-b"), "malformed ids are kept apart");
});

function fakeTimers() {
  const pending = new Map();
  let next = 1;
  return {
    setTimeout(fn, ms) {
      pending.set(next, { fn, ms });
      return next++;
    },
    clearTimeout(id) {
      pending.delete(id);
    },
    fire() {
      const all = [...pending.values()];
      pending.clear();
      for (const { fn } of all) fn();
    },
    get count() {
      return pending.size;
    },
  };
}

test("acks are batched within the delay window and deduplicated", async () => {
  const timers = fakeTimers();
  const batches = [];
  const acks = createAckBatcher({ send: async (ids) => batches.push(ids), delay: 100, timers });
  acks.add("e-1-d");
  acks.add("e-2-d");
  acks.add("e-1-d");
  assert.equal(timers.count, 1, "one timer for the whole batch");
  assert.deepEqual(batches, []);
  timers.fire();
  await acks.flush();
  assert.deepEqual(batches, [["e-1-d", "e-2-d"]]);
});

test("a full batch goes out at once", async () => {
  const timers = fakeTimers();
  const batches = [];
  const acks = createAckBatcher({ send: async (ids) => batches.push(ids), max: 3, timers });
  for (const id of ["e-1-d", "e-2-d", "e-3-d"]) acks.add(id);
  await Promise.resolve();
  assert.deepEqual(batches, [["e-1-d", "e-2-d", "e-3-d"]]);
  assert.equal(timers.count, 0);
});

test("a failed ack batch is kept for the next flush", async () => {
  const timers = fakeTimers();
  let fail = true;
  const batches = [];
  const acks = createAckBatcher({
    send: async (ids) => {
      if (fail) throw new TypeError("offline");
      batches.push(ids);
    },
    timers,
  });
  acks.add("e-1-d");
  await acks.flush();
  assert.equal(acks.size, 1);
  fail = false;
  acks.add("e-2-d");
  await acks.flush();
  assert.deepEqual(batches, [["e-1-d", "e-2-d"]]);
  assert.equal(acks.size, 0);
});

test("sends wait while offline, go out in order, and retry network failures", async () => {
  const calls = [];
  let down = true;
  const queue = new SendQueue(async (job) => {
    calls.push(job);
    if (down) throw new TypeError("Failed to fetch");
    return `answer ${job}`;
  }, () => 5);
  const first = queue.push("a");
  const second = queue.push("b");
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(calls, [], "nothing is attempted while offline");
  queue.setOnline(true);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.ok(calls.length >= 2 && calls.every((job) => job === "a"), "the head retries, b waits behind it");
  down = false;
  queue.setOnline(true);
  assert.equal(await first, "answer a");
  assert.equal(await second, "answer b");
  assert.equal(queue.size, 0);
});

test("an error that is not a network failure settles the send", async () => {
  const queue = new SendQueue(async () => {
    throw new RangeError("bad body");
  }, () => 5);
  queue.setOnline(true);
  await assert.rejects(queue.push("x"), RangeError);
});

test("fail() rejects everything queued", async () => {
  const queue = new SendQueue(async () => "never", () => 5);
  const pending = queue.push("x");
  queue.fail(new Error("closed"));
  await assert.rejects(pending, /closed/);
});

test("JSON encoding is chosen for plain values only", () => {
  assert.ok(needsJson({ a: 1 }));
  assert.ok(needsJson([1]));
  assert.ok(needsJson(3));
  assert.ok(!needsJson("text"));
  assert.ok(!needsJson(undefined));
  assert.ok(!needsJson(new URLSearchParams("a=1")));
  assert.ok(!needsJson(new Blob(["x"])));
  assert.ok(!needsJson(new Uint8Array(2)));
});

test("uuid is a v4 uuid", () => {
  assert.match(uuid(), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});
