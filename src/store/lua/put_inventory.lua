-- Writes the inventory under a new version, unless the caller expected another one.
-- KEYS: P:{inventory}:json, P:{inventory}:version (one hash slot).
-- ARGV: the JSON document, the expected version ('' for any), the floor version (the one the
-- calling instance serves, so versions never go backwards), the change channel.
-- Reply: {1, new version} when written, {0, current version} on a conflict.
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
local floor = tonumber(ARGV[3])
if floor > current then current = floor end
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= current then return {0, current} end
local version = current + 1
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], version)
redis.call('PUBLISH', ARGV[4], version)
return {1, version}
