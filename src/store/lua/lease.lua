-- Leases budget units of a capped campaign: never more than what is left under the caps, and
-- a quarter of it at most (the rule of `store::grant`).
-- KEYS: P:{c:CAMPAIGN}:lease, P:{c:CAMPAIGN}:lease:DAY (one hash slot).
-- ARGV: lifetime cap ('' for none), daily cap ('' for none), units wanted, TTL of the daily
-- counter in seconds.
-- Reply: {granted, leased over the campaign's life, leased for the day}.
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
local day = tonumber(redis.call('GET', KEYS[2]) or '0')
local remaining = -1
if ARGV[1] ~= '' then remaining = tonumber(ARGV[1]) - total end
if ARGV[2] ~= '' then
  local left = tonumber(ARGV[2]) - day
  if remaining < 0 or left < remaining then remaining = left end
end
local grant = 0
if remaining ~= 0 then
  grant = tonumber(ARGV[3])
  if remaining > 0 then grant = math.min(grant, math.max(1, math.floor(remaining / 4))) end
  if grant < 0 then grant = 0 end
end
if grant > 0 then
  redis.call('INCRBY', KEYS[1], grant)
  redis.call('INCRBY', KEYS[2], grant)
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
return {grant, total + grant, day + grant}
