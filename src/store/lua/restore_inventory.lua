-- Writes the inventory as the given version only if the store holds none or an older one.
-- KEYS: P:{inventory}:json, P:{inventory}:version (one hash slot).
-- ARGV: the JSON document, its version, the change channel.
-- Reply: 1 when written, else 0.
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if redis.call('EXISTS', KEYS[1]) == 1 and current >= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[2])
return 1
