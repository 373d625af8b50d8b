// How the browser tests start Debian's Chromium (never a browser downloaded by playwright).
// The flags keep it off the network: this machine refuses outside connections, and without
// them Chromium keeps trying (component updates, sync, background fetches, QUIC).
import { chromium } from "playwright-core";

export function launchChromium(executablePath = "/usr/bin/chromium") {
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
