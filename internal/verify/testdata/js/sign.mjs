// Signs webhook payloads with the vendors' own libraries, for the Go tests in
// internal/verify (vendor_test.go). One JSON request per stdin line, one JSON
// answer per stdout line, in order:
//   {"lib":"standardwebhooks"|"stripe"|"octokit","secret":…,"id":…,"timestamp":<unix s>,"payload":…}
//   -> {"header":"<signature header value>"}   or {"error":"…"}
// Nothing here touches the network.
import { createInterface } from "node:readline";
import { Webhook } from "standardwebhooks";
import Stripe from "stripe";
import { sign } from "@octokit/webhooks-methods";

// The API key is never used: generateTestHeaderString only signs locally.
const stripe = new Stripe("sk_test_unused");

async function signOne(r) {
  switch (r.lib) {
    case "standardwebhooks":
      // sign(msgId, Date, payload) returns "v1,<base64>".
      return new Webhook(r.secret).sign(r.id, new Date(r.timestamp * 1000), r.payload);
    case "stripe":
      // Returns "t=<timestamp>,v1=<hex>".
      return stripe.webhooks.generateTestHeaderString({
        payload: r.payload,
        secret: r.secret,
        timestamp: r.timestamp,
      });
    case "octokit":
      // Returns "sha256=<hex>", GitHub's X-Hub-Signature-256.
      return await sign(r.secret, r.payload);
    default:
      throw new Error(`unknown lib ${r.lib}`);
  }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let out;
  try {
    out = { header: await signOne(JSON.parse(line)) };
  } catch (e) {
    out = { error: String(e && e.message ? e.message : e) };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}
