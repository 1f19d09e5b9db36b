-- Moves a staged document into place under a new version, unless the caller expected another
-- one. The document was written to the staging key beforehand with a plain SET: carried
-- through Lua, megabytes would be copied twice more.
-- KEYS: P:{inventory}:json, P:{inventory}:version, P:{inventory}:staging:ID (one hash slot).
-- ARGV: the expected version ('' for any), the floor version (the one the calling instance
-- serves, so versions never go backwards), the change channel.
-- Reply: {1, new version} when written, {0, current version} on a conflict (the staged
-- document is deleted), {-1, current version} when the staged document is gone (it expired).
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
local floor = tonumber(ARGV[2])
if floor > current then current = floor end
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= current then
  redis.call('DEL', KEYS[3])
  return {0, current}
end
if redis.call('EXISTS', KEYS[3]) == 0 then return {-1, current} end
local version = current + 1
redis.call('RENAME', KEYS[3], KEYS[1])
redis.call('PERSIST', KEYS[1])
redis.call('SET', KEYS[2], version)
redis.call('PUBLISH', ARGV[3], version)
return {1, version}
