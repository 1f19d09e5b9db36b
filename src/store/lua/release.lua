-- Gives back leased units that were not served.
-- KEYS: P:{c:CAMPAIGN}:lease, P:{c:CAMPAIGN}:lease:DAY (one hash slot).
-- ARGV: units to give back.
-- Reply: 1.
for _, key in ipairs(KEYS) do
  local left = tonumber(redis.call('GET', key) or '0') - tonumber(ARGV[1])
  if left < 0 then left = 0 end
  if redis.call('EXISTS', key) == 1 then redis.call('SET', key, left, 'KEEPTTL') end
end
return 1
