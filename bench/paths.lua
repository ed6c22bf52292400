-- wrk script: thread k of $BENCH_THREADS sends every k-th line of $BENCH_PATHS in turn (headers come from -H),
-- so a list of single-use token URLs is never sent twice by two threads. done() prints one parsable line;
-- `wrapped` counts how often a thread ran past the end of its share of the list.
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
  paths, index, wrapped = {}, 0, 0
  local n = 0
  for line in io.lines(os.getenv("BENCH_PATHS")) do
    if n % nthreads == tid then paths[#paths + 1] = line end
    n = n + 1
  end
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
