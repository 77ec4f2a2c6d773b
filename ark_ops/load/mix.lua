-- wrk script for `invoke load --generator wrk` (issue #23 §5): a weighted mix of the
-- console's signed-in reads, built by ark_ops/load/mix.py from the API's OpenAPI document.
--
-- The session (cookie and CSRF token) and the mix come from the file named by ARK_WRK_MIX
-- (0600, written by the runner; no secret on wrk's command line). Lines:
--   cookie ark_session=...
--   csrf TOKEN
--   request WEIGHT PATH NAME WITH SPACES
-- ARK_WRK_RATE_PER_THREAD, when set, paces each thread to that many requests a second: each
-- request takes the thread's next free slot on a wall-clock schedule (so the rate does not
-- depend on how long answers take, as long as a connection is free; when the API falls
-- behind, the slots are in the past and wrk sends as fast as it is answered).
-- done() prints one line "ARK-WRK-JSON {...}" that the runner parses.

local names, paths, weights = {}, {}, {}
local cookie, csrf = nil, nil

local function load_mix()
  local file = os.getenv("ARK_WRK_MIX")
  if not file then error("ARK_WRK_MIX: no mix file given") end
  local f = assert(io.open(file, "r"))
  for line in f:lines() do
    local kind, rest = line:match("^(%S+) (.*)$")
    if kind == "cookie" then cookie = rest
    elseif kind == "csrf" then csrf = rest
    elseif kind == "request" then
      local w, p, n = rest:match("^(%d+) (%S+) (.+)$")
      if not w then error("mix file: bad request line") end
      names[#names + 1], paths[#paths + 1], weights[#weights + 1] = n, p, tonumber(w)
    end
  end
  f:close()
  if not cookie or not csrf or #paths == 0 then error("mix file: incomplete") end
end

-- main thread: keep each thread to read its counts in done()
local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
  thread:set("thread_id", #threads)
end

local cycle, formatted, pos, interval_ms, next_slot = {}, {}, 0, nil, 0
sent = {}

function init(args)
  load_mix()
  local headers = {["Cookie"] = cookie, ["X-CSRF-Token"] = csrf,
                   ["Accept"] = "application/json"}
  for i, p in ipairs(paths) do
    formatted[i] = wrk.format("GET", p, headers)
    sent[i] = 0
    for _ = 1, weights[i] do cycle[#cycle + 1] = i end
  end
  -- the same weights in a shuffled order, different per thread
  math.randomseed(1000 + (thread_id or 0))
  for i = #cycle, 2, -1 do
    local j = math.random(i)
    cycle[i], cycle[j] = cycle[j], cycle[i]
  end
  pos = math.random(#cycle) - 1
  local rate = tonumber(os.getenv("ARK_WRK_RATE_PER_THREAD") or "")
  interval_ms = rate and rate > 0 and 1000 / rate or nil
  -- the names, for done() in the main thread
  mix_names = table.concat(names, "\n")
end

function request()
  pos = pos % #cycle + 1
  local i = cycle[pos]
  sent[i] = sent[i] + 1
  return formatted[i]
end

if os.getenv("ARK_WRK_RATE_PER_THREAD") then
  local ffi = require("ffi")
  ffi.cdef[[
    typedef struct { long tv_sec; long tv_nsec; } ark_timespec;
    int clock_gettime(int clk_id, ark_timespec *tp);
  ]]
  local ts = ffi.new("ark_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  function delay()
    local now = now_ms()
    local slot = math.max(next_slot, now)
    next_slot = slot + interval_ms
    return math.floor(slot - now)
  end
end

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

function done(summary, latency, requests)
  local per = {}
  local labels = {}
  for _, t in ipairs(threads) do
    local counts = t:get("sent")
    local mixed = t:get("mix_names")
    if mixed then
      local k = 0
      for n in (mixed .. "\n"):gmatch("(.-)\n") do k = k + 1; labels[k] = n end
    end
    for i, c in pairs(counts or {}) do per[i] = (per[i] or 0) + c end
  end
  local sent_parts = {}
  for i, n in ipairs(labels) do
    sent_parts[#sent_parts + 1] = json_string(n) .. ":" .. tostring(per[i] or 0)
  end
  local e = summary.errors
  local pct = {}
  for _, p in ipairs({50, 90, 99, 99.9}) do
    pct[#pct + 1] = string.format('"%s":%d', tostring(p), latency:percentile(p))
  end
  io.write(string.format(
    'ARK-WRK-JSON {"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"stdev":%.1f,"percentiles":{%s}},' ..
    '"sent":{%s}}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency.min, latency.mean, latency.max, latency.stdev,
    table.concat(pct, ","), table.concat(sent_parts, ",")))
end
