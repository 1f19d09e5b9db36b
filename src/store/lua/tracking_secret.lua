-- The tracking signing secret every instance of the store shares: the first instance's
-- candidate is kept (SET NX), every later one reads it.
-- KEYS: P:tracking-secret.
-- ARGV: this instance's candidate secret.
-- Reply: the shared secret.
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
