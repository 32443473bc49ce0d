//! The Lua scripts that make each cluster operation one atomic step in Redis.

use redis::Script;

/// Sequences, stores and fans out one message.
///
/// KEYS: 1 sequence counter, 2 history stream, 3 durable expiry index, then per durable user
/// its inbox hash and its read hash. ARGV: 1 the message (JSON), 2 the bus channel,
/// 3 history length bound, 4 the inbox record (JSON), 5 expiry (ms), 6.. the durable users.
///
/// Because INCR, XADD and PUBLISH run as one script, every node receives messages on the bus
/// in sequence order, and a message is stored before anyone can see it.
pub(super) fn publish() -> Script {
    Script::new(
        r"
local seq = redis.call('INCR', KEYS[1])
local stream_id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'seq', seq, 'm', ARGV[1])
local unread = {}
for i = 4, #KEYS, 2 do
  local user = ARGV[6 + (i - 4) / 2]
  redis.call('HSET', KEYS[i], seq, ARGV[4])
  redis.call('ZADD', KEYS[3], ARGV[5], user .. '\n' .. seq)
  unread[#unread + 1] = user
  unread[#unread + 1] = redis.call('HLEN', KEYS[i]) - redis.call('HLEN', KEYS[i + 1])
end
local counts = '[]'
if #unread > 0 then counts = cjson.encode(unread) end
redis.call('PUBLISH', ARGV[2], 'm ' .. seq .. ' ' .. stream_id .. ' ' .. counts .. '\n' .. ARGV[1])
return seq
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
