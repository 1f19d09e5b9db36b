-- Applies a batch of counters once: a retried batch is recognised by its id.
-- Builds its keys from the prefix (see store/keys.rs), so every key must be on one node.
-- ARGV: prefix, batch id, batch ttl, dedup ttl, number of served entries, then
-- (campaign, day, slot, count) per served entry, then (counter, decision id, campaign, day,
-- slot) per event.
-- Reply: -1 for a batch already applied, else a string of '0'/'1', one per event: whether it
-- was counted (a '0' is a duplicate).
local p = ARGV[1]
if not redis.call('SET', p .. ':batch:' .. ARGV[2], '1', 'NX', 'EX', ARGV[3]) then return -1 end
local ttl = ARGV[4]
local i = 6
for _ = 1, tonumber(ARGV[5]) do
  local c, d, s, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  redis.call('HINCRBY', p .. ':stats:' .. c .. ':' .. d, 'served|' .. s, n)
  redis.call('HINCRBY', p .. ':totals:' .. c, 'served', n)
  i = i + 4
end
local counted = {}
while i <= #ARGV do
  local f, id, c, d, s = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  if redis.call('SET', p .. ':seen:' .. f .. ':' .. id, '1', 'NX', 'EX', ttl) then
    redis.call('HINCRBY', p .. ':stats:' .. c .. ':' .. d, f .. '|' .. s, 1)
    redis.call('HINCRBY', p .. ':totals:' .. c, f, 1)
    redis.call('HINCRBY', p .. ':slot-totals:' .. c, f .. '|' .. s, 1)
    counted[#counted + 1] = '1'
  else
    counted[#counted + 1] = '0'
  end
  i = i + 5
end
return table.concat(counted)
