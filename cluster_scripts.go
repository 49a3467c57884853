package mcpsse

import "github.com/redis/go-redis/v9"

// The Lua scripts a cluster runs in Redis, each one atomic. Keys, under a
// store's namespace ns:
//
//	ns:s:<session>  hash: the session's shared state (see sharedState)
//	ns:e:<session>  stream: the events for the client, ID <seq>-0
//	ns:l:<session>  string: the stream's holder, "<instance> <epoch>"
//	ns:w:<identity> set: the sessions an identity opened
//	ns:h:<instance> set: the sessions whose stream an instance holds
//	ns:p:<instance> hash: the client requests an instance is relaying,
//	                "<session> <request id>" → the upstream's last event ID
//	ns:i:<instance> string, with a TTL: the instance is alive
//	ns:instances    set: the instances that registered
//	ns:sessions     sorted set: every session, by when it opened
//	ns:expiry       sorted set: sessions without a stream, by when they end
//
// and the channel ns:c:<instance>, on which an instance hears of the
// events for the streams it holds ("m <session> <seq>\n<data>") and of
// streams another instance took from it ("r <session> <epoch>"), and
// ns:c:all, on which every instance hears of sessions that ended
// ("e <session>").

// appendScript appends an event to a session's log, numbering it, and
// publishes it to the instance holding the session's stream, if any, in
// one step: the holder learns of it at once, and an event published while
// no one listens waits in the log. A floor raises the numbering past the
// events a holder wrote while Redis was unreachable. It returns the
// event's number and the holder's instance ("" for none), or -1 if the
// session is not in Redis.
//
// It returns -2, writing nothing, if a pending record is named and
// another instance took it over.
//
// KEYS: hash, log, lease. ARGV: ns, session, data, maxlen, floor,
// upstream GET stream's event ID or "", pending key or "", pending field.
var appendScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[7] ~= '' and redis.call('HEXISTS', ARGV[7], ARGV[8]) == 0 then return -2 end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local floor = tonumber(ARGV[5])
if seq <= floor then
	seq = floor + 1
	redis.call('HSET', KEYS[1], 'seq', seq)
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], seq .. '-0', 'd', ARGV[3])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'glid', ARGV[6]) end
local lease = redis.call('GET', KEYS[3])
local holder = ''
if lease then
	holder = string.match(lease, '^(%S+) ')
	redis.call('PUBLISH', ARGV[1] .. ':c:' .. holder, 'm ' .. ARGV[2] .. ' ' .. seq .. '\n' .. ARGV[3])
end
return {seq, holder}
`)

// progressScript records the upstream's last event ID for a pending
// request, if it is still pending here.
//
// KEYS: pending. ARGV: field, last event ID.
var progressScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
`)

// attachScript makes an instance the holder of a session's stream under a
// new epoch, and tells the previous holder, which stops its stream. It
// returns the epoch and the previous holder ("" for none), or -1 if the
// session is not in Redis.
//
// KEYS: hash, lease, the instance's held set, expiry. ARGV: ns, session,
// instance.
var attachScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
local old = redis.call('GET', KEYS[2])
redis.call('SET', KEYS[2], ARGV[3] .. ' ' .. epoch)
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
local holder = ''
if old then
	local e
	holder, e = string.match(old, '^(%S+) (%d+)$')
	if holder ~= ARGV[3] then redis.call('SREM', ARGV[1] .. ':h:' .. holder, ARGV[2]) end
	redis.call('PUBLISH', ARGV[1] .. ':c:' .. holder, 'r ' .. ARGV[2] .. ' ' .. e)
end
return {epoch, holder}
`)

// releaseScript gives up a stream's hold on its session, if the holder
// still holds it under its epoch: the session then ends after the window
// (milliseconds) unless a stream re-attaches, and delivered is the last
// event its stream wrote. It returns 1 if it released, 0 if another
// instance had taken the session over.
//
// KEYS: lease, the instance's held set, expiry, hash. ARGV: session,
// "<instance> <epoch>", window, delivered.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
local t = redis.call('TIME')
redis.call('ZADD', KEYS[3], t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[4], 'dlv', ARGV[4])
return 1
`)

// reapScript takes over what a dead instance left, once, for the one
// instance that runs it first: the sessions whose streams it held end
// after the window unless a stream re-attaches, and the requests it was
// relaying are returned, as field and value pairs of its pending hash, for
// the caller to finish. It returns false if another instance reaped it.
//
// KEYS: instances. ARGV: ns, dead instance, window.
var reapScript = redis.NewScript(`
if redis.call('SREM', KEYS[1], ARGV[2]) == 0 then return false end
local held = ARGV[1] .. ':h:' .. ARGV[2]
local t = redis.call('TIME')
local deadline = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[3])
for _, sid in ipairs(redis.call('SMEMBERS', held)) do
	local lease = ARGV[1] .. ':l:' .. sid
	local holder = redis.call('GET', lease)
	if holder and string.match(holder, '^(%S+) ') == ARGV[2] then
		redis.call('DEL', lease)
		redis.call('ZADD', ARGV[1] .. ':expiry', deadline, sid)
	end
end
redis.call('DEL', held)
local pending = ARGV[1] .. ':p:' .. ARGV[2]
local left = redis.call('HGETALL', pending)
redis.call('DEL', pending)
return left
`)

// dueScript claims up to ARGV[1] sessions whose time without a stream is
// up: each is returned to one instance only, which ends it.
//
// KEYS: expiry.
var dueScript = redis.NewScript(`
local t = redis.call('TIME')
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', t[1] * 1000 + math.floor(t[2] / 1000), 'LIMIT', 0, tonumber(ARGV[1]))
for _, sid in ipairs(due) do redis.call('ZREM', KEYS[1], sid) end
return due
`)

// forgetScript removes an ended session from Redis and tells every
// instance, which drop their copies of it.
//
// KEYS: hash, log, lease, sessions, expiry. ARGV: ns, session.
var forgetScript = redis.NewScript(`
local who = redis.call('HGET', KEYS[1], 'who')
if who and who ~= '' then redis.call('SREM', ARGV[1] .. ':w:' .. who, ARGV[2]) end
local lease = redis.call('GET', KEYS[3])
if lease then
	redis.call('SREM', ARGV[1] .. ':h:' .. string.match(lease, '^(%S+) '), ARGV[2])
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('ZREM', KEYS[5], ARGV[2])
redis.call('PUBLISH', ARGV[1] .. ':c:all', 'e ' .. ARGV[2])
return 1
`)

// leaveScript takes an instance out of the live ones, and reports how
// many are left. It stays a member until another instance reaps it and
// finishes the requests it was relaying, unless it was the last.
//
// KEYS: instances, the instance's alive key. ARGV: ns, instance.
var leaveScript = redis.NewScript(`
redis.call('DEL', KEYS[2])
local live = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
	live = live + redis.call('EXISTS', ARGV[1] .. ':i:' .. id)
end
if live == 0 then redis.call('SREM', KEYS[1], ARGV[2]) end
return live
`)
