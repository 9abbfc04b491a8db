// Node's fetch through undici's proxy agents, as an agent builder wires it.
// usage: node fetch.mjs proxy|env URL
// prints one JSON line: {"status", "body"} or {"error", "causes": [each nested cause's text]}
import { createRequire } from "node:module";

const require = createRequire(process.env.CORRAL_NODE_MODULES + "/");
const { fetch, ProxyAgent, EnvHttpProxyAgent } = require("undici");

const [mode, url] = process.argv.slice(2);
const dispatcher = mode === "env" ? new EnvHttpProxyAgent() : new ProxyAgent(process.env.HTTPS_PROXY);
try {
  const res = await fetch(url, { dispatcher, signal: AbortSignal.timeout(10000) });
  console.log(JSON.stringify({ status: res.status, body: await res.text() }));
} catch (err) {
  const causes = [];
  for (let c = err.cause; c && causes.length < 5; c = c.cause) causes.push(String(c));
  console.log(JSON.stringify({ error: String(err), causes }));
}
