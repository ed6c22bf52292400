-- wrk script: each thread sends the lines of $BENCH_PATHS in turn (headers come from -H). With $BENCH_SPLIT=1,
-- thread k of $BENCH_THREADS takes only every k-th line, so single-use token URLs are never sent by two threads.
-- done() prints one parsable line; `wrapped` counts how often a thread ran past the end of its list.
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local nthreads = 1
  if os.getenv("BENCH_SPLIT") == "1" then nthreads = tonumber(os.getenv("BENCH_THREADS")) end
  paths, index, wrapped = {}, 0, 0
  local n = 0
  for line in io.lines(os.getenv("BENCH_PATHS")) do
    if n % nthreads == tid % nthreads then paths[#paths + 1] = line end
    n = n + 1
  end
  assert(#paths > 0, "no request paths for thread " .. tid)
end

function request()
  index = index + 1
  if index > #paths then
    index, wrapped = 1, wrapped + 1
  end
  return wrk.format(nil, paths[index])
end

function done(summary, latency, requests)
  local wraps = 0
  for _, thread in ipairs(threads) do wraps = wraps + thread:get("wrapped") end
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d status=%d connect=%d read=%d write=%d timeout=%d wrapped=%d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout, wraps))
end
