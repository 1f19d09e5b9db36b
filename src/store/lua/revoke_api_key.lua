-- Revokes the advertiser's API key, atomically with any concurrent set_api_key.lua.
-- KEYS: P:advertiser-key:{advertiser}.
-- ARGV: the prefix of the key records (P:apikey:).
-- Reply: 1 when a key was revoked, 0 when the advertiser had none.
local old = redis.call('GET', KEYS[1])
if not old then return 0 end
redis.call('DEL', ARGV[1] .. old)
redis.call('DEL', KEYS[1])
return 1
