-- wrk script for scripts/loadtest.sh: GETs the paths listed in a file, one request per path.
--
--   wrk -t T -c C -d D -s loadtest/walk_paths.lua http://HOST:PORT -- PATHS_FILE T
--
-- Thread i (1-based) of T takes lines i, i+T, i+2T, … of PATHS_FILE, so no two threads send
-- the same path and every request is a distinct path (a distinct impression token) until a
-- thread has walked its whole slice. wrk cannot end a run early without spoiling its
-- requests/s (it always divides by the full -d), so a thread that runs out starts its slice
-- again; done() prints how many requests were such repeats, and the caller sizes the file so
-- that there are none.
--
-- done() prints one line the caller parses:
--   walk: paths=N generated=N repeats=N
-- "generated" counts request() calls; wrk calls it once more than it sends, to check the
-- script, and the requests in flight when -d ends are generated but not completed.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("id", #threads)
end

function init(args)
   local file, nthreads = args[1], tonumber(args[2])
   if not file or not nthreads then
      error("usage: -s walk_paths.lua URL -- PATHS_FILE THREADS")
   end
   paths = {}
   local i = 0
   for line in io.lines(file) do
      if line ~= "" then
         if i % nthreads == id - 1 then
            paths[#paths + 1] = line
         end
         i = i + 1
      end
   end
   if #paths == 0 then
      error("no path for thread " .. id .. " in " .. file)
   end
   npaths = #paths
   generated = 0
   repeats = 0
   next_index = 1
end

function request()
   if next_index > npaths then
      next_index = 1
   end
   local path = paths[next_index]
   next_index = next_index + 1
   generated = generated + 1
   if generated > npaths then
      repeats = repeats + 1
   end
   return wrk.format("GET", path)
end

function done(summary, latency, requests)
   local npaths_all, generated_all, repeats_all = 0, 0, 0
   for _, thread in ipairs(threads) do
      npaths_all = npaths_all + thread:get("npaths")
      generated_all = generated_all + thread:get("generated")
      repeats_all = repeats_all + thread:get("repeats")
   end
   io.write(string.format("walk: paths=%d generated=%d repeats=%d\n",
      npaths_all, generated_all, repeats_all))
end
