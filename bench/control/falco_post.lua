-- wrk script: one Falco http_output alert per POST, as Falco sends them (keep-alive).
-- Alerts rotate over 50 pods of two agents and 8 rules/processes, so enrichment, dedup and
-- grouping do real work (not one cached key).
local n = 0
local rules = {"Terminal shell in container", "Read service account token",
               "Package manager run", "Contact K8S API server", "Drop and execute new binary",
               "Outbound connection bypassing gateway", "Unexpected process", "Crypto miner pool"}
local prios = {"Warning", "Critical", "Error", "Notice", "Critical", "Error", "Warning", "Critical"}
local procs = {"bash", "cat", "apt", "curl", "xmrig", "nc", "perl", "sh"}
local agents = {"research-agent", "coding-agent"}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("CORRAL_INGEST_TOKEN") or "")
request = function()
  n = n + 1
  local r = (n % 8) + 1
  local pod = n % 50
  local app = agents[(pod % 2) + 1]
  local body = string.format(
    '{"output":"12:01:58.123456789: %s %s (user=root proc=%s pod=p%d)","priority":"%s",' ..
    '"rule":"%s","time":"2026-11-26T12:01:58.%09dZ","source":"syscall","hostname":"node-1",' ..
    '"tags":["container","mitre_execution","T1059"],"output_fields":{"evt.time":%d,' ..
    '"container.id":"c%011d","container.image.repository":"registry.example.com/agents/x",' ..
    '"k8s.ns.name":"ai-workloads","k8s.pod.name":"%s-%d","k8s.pod.labels":"app:%s,pod-template-hash:7d9f",' ..
    '"proc.name":"%s","proc.cmdline":"%s -c id","proc.pname":"python3","user.name":"root","fd.name":"/etc/x%d"}}',
    prios[r], rules[r], procs[r], pod, prios[r], rules[r], n % 1000000000, n, pod, app, pod,
    app, procs[r], procs[r], n % 13)
  return wrk.format(nil, "/v1/falco", nil, body)
end
