-- Makes a key hash the advertiser's only API key, atomically: two concurrent calls cannot
-- both keep the key they replaced, so no orphan key keeps working.
-- KEYS: P:advertiser-key:{advertiser}.
-- ARGV: the prefix of the key records (P:apikey:), the new key's hash, the advertiser id.
-- Reply: 1.
local old = redis.call('GET', KEYS[1])
if old then redis.call('DEL', ARGV[1] .. old) end
redis.call('SET', ARGV[1] .. ARGV[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[2])
return 1
