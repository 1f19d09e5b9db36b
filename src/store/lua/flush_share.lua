-- Adds a flushed batch's counts for one campaign, once: a retried batch is recognised by its
-- marker. Every key is the campaign's (one hash slot); the events' de-duplication marks were
-- set before, by decision (see store/redis/flush.rs).
-- KEYS: P:{c:CAMPAIGN}:batch:BATCH (the marker), P:{c:CAMPAIGN}:totals,
-- P:{c:CAMPAIGN}:slot-totals, then P:{c:CAMPAIGN}:stats:DAY for each day the share counts.
-- ARGV: marker TTL in seconds; number of totals fields, then (counter, count) per totals
-- field; number of slot-totals fields, then (`counter|slot`, count) per slot-totals field;
-- then (index into KEYS, `counter|slot`, count) per stats field.
-- Reply: 1 when applied, 0 when the marker says it already was.
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local i = 3
for _ = 1, tonumber(ARGV[2]) do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local slot_fields = tonumber(ARGV[i])
i = i + 1
for _ = 1, slot_fields do
  redis.call('HINCRBY', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HINCRBY', KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
  i = i + 3
end
return 1
