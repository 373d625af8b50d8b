// Median wall time per CSR: warden-wasm's generateKeyAndCsr (key + CSR in Rust) against
// @peculiar/x509's Pkcs10CertificateRequestGenerator with a WebCrypto key, for an equivalent
// request (empty subject, the same URI and DNS SANs). Also times warden-wasm's WebCrypto path.
// Sets window.benchResult (read by tests/browser/bench.mjs) and shows it on the page.
import init, { generateKeyAndCsr, generateCsrWithWebCrypto } from "./pkg/warden_wasm.js";

const SPIFFE_ID = "spiffe://public/ns/default/bench";
const DNS_NAME = "bench.default.svc.cluster.local";
const WARMUP = 5;

const params = new URLSearchParams(location.search);
const runs = Math.max(1, Number.parseInt(params.get("runs") ?? "100", 10) || 100);

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Runs `op` WARMUP + runs times; returns the median ms of the timed runs and the last result. */
async function measure(op) {
  let last;
  for (let i = 0; i < WARMUP; i++) last = await op();
  const times = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    last = await op();
    times.push(performance.now() - start);
  }
  return {
    medianMs: Number(median(times).toFixed(3)),
    minMs: Number(Math.min(...times).toFixed(3)),
    maxMs: Number(Math.max(...times).toFixed(3)),
    runs,
    sample: last,
  };
}

/** @peculiar/x509: a fresh WebCrypto key pair and a CSR with the same SANs. */
async function peculiar(algorithm, signingAlgorithm) {
  const keys = await crypto.subtle.generateKey(algorithm, false, ["sign", "verify"]);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm,
    extensions: [
      new x509.SubjectAlternativeNameExtension([
        { type: "url", value: SPIFFE_ID },
        { type: "dns", value: DNS_NAME },
      ]),
    ],
  });
  return csr.toString("pem");
}

async function run() {
  const started = performance.now();
  await init();
  const initMs = performance.now() - started;
  const request = { spiffeId: SPIFFE_ID, dnsNames: [DNS_NAME] };
  const results = {};
  results.wasmP256 = await measure(() => generateKeyAndCsr({ keyType: "p256", ...request }).csrPem);
  results.wasmEd25519 = await measure(
    () => generateKeyAndCsr({ keyType: "ed25519", ...request }).csrPem,
  );
  results.wasmWebCryptoP256 = await measure(async () => (await generateCsrWithWebCrypto(request)).csrPem);
  const ecdsa = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  results.peculiarP256 = await measure(() => peculiar(ecdsa, ecdsa));
  try {
    results.peculiarEd25519 = await measure(() => peculiar({ name: "Ed25519" }, { name: "Ed25519" }));
  } catch (e) {
    results.peculiarEd25519 = { unsupported: `WebCrypto Ed25519 failed: ${e.name}: ${e.message}` };
  }
  return {
    userAgent: navigator.userAgent,
    // Chromium coarsens performance.now() without cross-origin isolation (100 µs).
    crossOriginIsolated: globalThis.crossOriginIsolated === true,
    wasmInitMs: Number(initMs.toFixed(3)),
    spiffeId: SPIFFE_ID,
    dnsName: DNS_NAME,
    results,
  };
}

const status = document.getElementById("status");
run().then(
  (result) => {
    window.benchResult = result;
    status.textContent = "done";
    document.getElementById("result").textContent = JSON.stringify(result, null, 2);
  },
  (e) => {
    window.benchResult = { error: `${e?.name ?? "Error"}: ${e?.message ?? e}` };
    status.textContent = `failed: ${window.benchResult.error}`;
  },
);
