-- For one viewer, serves each chain (a slot's candidates in the order they would be served) its
-- first campaign under its frequency cap and not served by an earlier chain, and reserves a
-- view of it; the walk `store::first_allowed` does in Rust.
-- KEYS: P:{v:VIEWER}:freq: (the start of the viewer's keys; each campaign's key appends its
-- id, so every key shares the viewer's hash tag and slot, and this key routes the call).
-- ARGV: now (ms), reservation id, number of chains, then per chain its length and
-- (campaign, max views or -1 for no cap, window ms) per candidate.
-- Reply: per chain, the 1-based position of the campaign served, 0 for none.
local base, now, member = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local served, out = {}, {}
local i = 4
for chain = 1, tonumber(ARGV[3]) do
  local n = tonumber(ARGV[i])
  i = i + 1
  local pick = 0
  for position = 1, n do
    local campaign = ARGV[i]
    if pick == 0 and not served[campaign] then
      local max = tonumber(ARGV[i + 1])
      if max < 0 then
        pick = position
      else
        local key, window = base .. campaign, tonumber(ARGV[i + 2])
        -- Views past the window are trimmed only when they could make a difference: the set
        -- never holds more than max views, and a new viewer costs three calls, not four.
        local seen = redis.call('ZCARD', key)
        if seen >= max then
          redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
          seen = redis.call('ZCARD', key)
        end
        if seen < max then
          redis.call('ZADD', key, now, member)
          redis.call('PEXPIRE', key, window)
          pick = position
        end
      end
      if pick ~= 0 then
        served[campaign] = true
      end
    end
    i = i + 3
  end
  out[chain] = pick
end
return out
