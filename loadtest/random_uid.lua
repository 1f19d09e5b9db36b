-- wrk script for scripts/loadtest.sh: GETs one path, each request with a random viewer id.
--
--   wrk -t T -c C -d D -s loadtest/random_uid.lua http://HOST:PORT -- PATH uid|kept|none
--
-- With "uid", each request appends uid=lt<random 31-bit number>: practically every request
-- is a new viewer, so a frequency cap never binds, and every request with a frequency-capped
-- candidate costs regie its one Redis round trip (a new sorted set per viewer and campaign).
-- With "kept", each request also sends an empty frequency state (fs=), as tag.js does for a
-- browser regie has not served yet: the caps are checked and counted in the state the answer
-- carries, with no round trip to the store.
-- With "none", the same script sends PATH without a uid: wrk does the same work per request
-- (a script call, a random number, a formatted request), so the two runs differ only on
-- regie's side.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("id", #threads)
end

function init(args)
   path, mode = args[1], args[2]
   if not path or (mode ~= "uid" and mode ~= "kept" and mode ~= "none") then
      error("usage: -s random_uid.lua URL -- PATH uid|kept|none")
   end
   separator = path:find("?", 1, true) and "&" or "?"
   -- Seeded per thread, so that threads do not draw the same viewers.
   math.randomseed(os.time() * 1000 + id * 7919)
end

function request()
   local viewer = math.random(1, 2147483647)
   if mode == "uid" then
      return wrk.format("GET", path .. separator .. "uid=lt" .. viewer)
   elseif mode == "kept" then
      return wrk.format("GET", path .. separator .. "uid=lt" .. viewer .. "&fs=")
   end
   return wrk.format("GET", path)
end
