-- Applies a batch of counters once: a retried batch is recognised by its id.
-- Builds its keys from the prefix (see store/keys.rs), so every key must be on one node.
-- ARGV: prefix, batch id, batch ttl, dedup ttl, number of served entries, then
-- (campaign, day, slot, count, field) per served entry, then (counter, decision id, campaign,
-- day, slot, invalid reason or '') per event.
-- Invalid traffic is counted apart, in the fields `invalid.{reason}.{counter}` of the same
-- hashes. A click with no reason of its own is invalid (`no_impression`) unless its decision's
-- impression was counted as valid: the de-duplication mark is '1' for a valid event, '0' for
-- an invalid one.
-- Reply: -1 for a batch already applied, else a string of one code per event: '0' a
-- duplicate, '1' counted, or the first letter of the reason it was counted invalid for.
local p = ARGV[1]
if not redis.call('SET', p .. ':batch:' .. ARGV[2], '1', 'NX', 'EX', ARGV[3]) then return -1 end
local ttl = ARGV[4]
local i = 6
for _ = 1, tonumber(ARGV[5]) do
  local c, d, s, n, f = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  redis.call('HINCRBY', p .. ':stats:' .. c .. ':' .. d, f .. '|' .. s, n)
  redis.call('HINCRBY', p .. ':totals:' .. c, f, n)
  i = i + 5
end
local codes = { bot = 'b', rate = 'r', no_impression = 'n', too_fast = 't' }
local counted = {}
while i <= #ARGV do
  local f, id, c, d, s, r = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  if r == '' and f == 'clicks' and redis.call('GET', p .. ':seen:impressions:' .. id) ~= '1' then
    r = 'no_impression'
  end
  local mark, name, code = '1', f, '1'
  if r ~= '' then mark, name, code = '0', 'invalid.' .. r .. '.' .. f, codes[r] end
  if redis.call('SET', p .. ':seen:' .. f .. ':' .. id, mark, 'NX', 'EX', ttl) then
    redis.call('HINCRBY', p .. ':stats:' .. c .. ':' .. d, name .. '|' .. s, 1)
    redis.call('HINCRBY', p .. ':totals:' .. c, name, 1)
    -- The optimize rotation learns from valid events only.
    if r == '' then redis.call('HINCRBY', p .. ':slot-totals:' .. c, f .. '|' .. s, 1) end
    counted[#counted + 1] = code
  else
    counted[#counted + 1] = '0'
  end
  i = i + 6
end
return table.concat(counted)
