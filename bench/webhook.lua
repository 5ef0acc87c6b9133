-- wrk script: every request is a distinct Whapi inbound text envelope (reference/whapi.md 1.2).
-- Arguments after `--`: webhook secret, phone prefix (6 digits), run nonce.
-- Each wrk thread numbers its own requests; the thread number keeps phones and ids distinct.

local threads = {}
local counter = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  secret = args[1] or ""
  prefix = args[2] or "491510"
  nonce = args[3] or "0"
  wrk.method = "POST"
  wrk.path = "/webhooks/whapi"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Webhook-Token"] = secret
end

function request()
  counter = counter + 1
  local phone = string.format("%s%01d%06d", prefix, tid % 10, counter % 1000000)
  local body = string.format(
    '{"messages":[{"id":"bench%s.%s.%d.%d-gBgTwl0rVw","from_me":false,"type":"text",' ..
    '"chat_id":"%s@s.whatsapp.net","timestamp":%d,"source":"mobile",' ..
    '"text":{"body":"Hello"},"from":"%s","from_name":"Patient %d"}],' ..
    '"event":{"type":"messages","event":"post"},"channel_id":"BENCH-01"}',
    nonce, prefix, tid, counter, phone, os.time(), phone, counter)
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeout_errors":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
