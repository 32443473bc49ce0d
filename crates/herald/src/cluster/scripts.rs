//! The Lua scripts that make each cluster operation one atomic step in Redis.

use redis::Script;

/// Sequences, stores and fans out one message.
///
/// KEYS: 1 sequence counter, 2 history stream, 3 durable expiry index, 4 epoch, then per
/// durable user its inbox hash and its read hash. ARGV: 1 the message (JSON), 2 the bus
/// channel, 3 history length bound, 4 the inbox record (JSON), 5 expiry (ms), 6 `PUBLISH` or
/// `SPUBLISH` (Redis Cluster: sharded, stays on the app's shard), 7 the floor: the highest
/// sequence the publishing node has applied, 8.. the durable users.
///
/// Because INCR, XADD and PUBLISH run as one script, every node receives messages on the bus
/// in sequence order, and a message is stored before anyone can see it. The floor keeps ids
/// unique across a failover: a promoted replica that missed the last increments continues
/// above everything the publishing node has seen, never below. The bus line carries the epoch,
/// so that a node that missed a change of epoch notices it on the next message.
pub(super) fn publish() -> Script {
    Script::new(
        r"
local floor = tonumber(ARGV[7])
if tonumber(redis.call('GET', KEYS[1]) or '0') < floor then redis.call('SET', KEYS[1], floor) end
local seq = redis.call('INCR', KEYS[1])
local stream_id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'seq', seq, 'm', ARGV[1])
local epoch = redis.call('GET', KEYS[4]) or '-'
local unread = {}
for i = 5, #KEYS, 2 do
  local user = ARGV[8 + (i - 5) / 2]
  redis.call('HSET', KEYS[i], seq, ARGV[4])
  redis.call('ZADD', KEYS[3], ARGV[5], user .. '\n' .. seq)
  unread[#unread + 1] = user
  unread[#unread + 1] = redis.call('HLEN', KEYS[i]) - redis.call('HLEN', KEYS[i + 1])
end
local counts = '[]'
if #unread > 0 then counts = cjson.encode(unread) end
redis.call(ARGV[6], ARGV[2], 'm ' .. seq .. ' ' .. stream_id .. ' ' .. epoch .. ' ' .. counts .. '\n' .. ARGV[1])
return seq
",
    )
}

/// Raises the sequence counter to at least ARGV[1] (KEYS[1]); returns what it was. A node runs
/// it with its head after every reconnection: after a failover, the new primary may lack the
/// last increments this node has seen.
pub(super) fn fence() -> Script {
    Script::new(
        r"
local was = tonumber(redis.call('GET', KEYS[1]) or '0')
if was < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return was
",
    )
}

/// Replaces the epoch KEYS[1] by ARGV[2] if it still is ARGV[1]: a node that saw a sequence
/// number issued twice (ids would repeat) starts a new history for every node.
pub(super) fn fork() -> Script {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end
return 0
",
    )
}

/// Marks a user's messages read. KEYS: 1 inbox hash, 2 read hash. ARGV: 1 now (ms), 2.. seqs.
/// Returns `{acked, unread}`; a seq that is not in this user's inbox changes nothing.
pub(super) fn ack() -> Script {
    Script::new(
        r"
local acked = 0
for i = 2, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 and redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[1]) == 1 then
    acked = acked + 1
  end
end
return {acked, redis.call('HLEN', KEYS[1]) - redis.call('HLEN', KEYS[2])}
",
    )
}

/// Buries a node that stopped refreshing its presence, if it still has not: takes it out of
/// the live set KEYS[1], announces each connection of its hash KEYS[2] as gone and deletes the
/// hash. ARGV: 1 the node, 2 the latest refresh (ms) that counts as silent, 3 `PUBLISH` or
/// `SPUBLISH`, 4 the bus channel, 5 and 6 what goes before and after a connection's JSON in its
/// bus line. Returns 1 if it buried the node. One step, so that a node refreshing between a
/// peer's look at the set and its burial is never buried alive.
pub(super) fn bury() -> Script {
    Script::new(
        r"
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
for _, connection in ipairs(redis.call('HVALS', KEYS[2])) do
  redis.call(ARGV[3], ARGV[4], ARGV[5] .. connection .. ARGV[6])
end
redis.call('DEL', KEYS[2])
return 1
",
    )
}
