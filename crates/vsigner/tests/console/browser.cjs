// Drives the vsigner console in Debian's Chromium (playwright-core, no downloaded browser)
// for crates/vsigner/tests/daemon/console.rs. One step per run; the arguments come as JSON
// in VSIGNER_CONSOLE_STEP:
//   {"base", "organisationId", "name", "password", "passkey": {"credentialId", "privateKey"},
//    "action": "approve" | "reject" | "look", "operationId", "deviceId", "expect",
//    "screenshots": dir or null, "shot": file name prefix}
// Chromium's virtual authenticator (CDP WebAuthn domain) holds the passkey and verifies the
// "user" (it stands in for the biometric check). Prints one JSON line with what it saw.
const path = require("path");
const { chromium } = require(path.join(process.env.VSIGNER_TEST_NODE_MODULES, "playwright-core"));

const step = JSON.parse(process.env.VSIGNER_CONSOLE_STEP);
const seen = {};

async function shot(page, name, fullPage = true) {
  if (step.screenshots) {
    await page.screenshot({ path: path.join(step.screenshots, `${name}.png`), fullPage });
  }
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.VSIGNER_TEST_CHROMIUM,
    headless: true,
    args: ["--no-sandbox"],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const page = await context.newPage();
    page.on("console", (m) => m.type() === "error" && console.error(`page: ${m.text()}`));
    const cdp = await context.newCDPSession(page);
    await cdp.send("WebAuthn.enable");
    const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
      options: {
        protocol: "ctap2",
        transport: "internal",
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    });
    if (step.passkey) {
      const b64 = step.passkey.credentialId.replace(/-/g, "+").replace(/_/g, "/");
      await cdp.send("WebAuthn.addCredential", {
        authenticatorId,
        credential: {
          credentialId: b64 + "===".slice((b64.length + 3) % 4),
          isResidentCredential: false,
          rpId: new URL(step.base).hostname,
          privateKey: step.passkey.privateKey,
          signCount: step.passkey.signCount || 0,
        },
      });
    }

    // Sign in.
    await page.goto(`${step.base}/console/`);
    await page.fill("#organisation", step.organisationId);
    await page.fill("#name", step.name);
    await page.fill("#password", step.password);
    if (step.shot === "1") await shot(page, "sign-in");
    await page.click("#sign-in button[type=submit]");
    await page.waitForSelector("table, .card p.muted");
    seen.signedInAs = await page.textContent("#who-name");

    if (step.action === "register") {
      // The person registers a passkey; the page shows the device's passkeys file.
      await page.goto(`${step.base}/console/#/passkeys`);
      await page.click("#register-passkey");
      await page.locator("p.notice").waitFor();
      seen.status = await page.textContent("p.notice");
      const id = seen.status.match(/Registered passkey (\S+)\./)[1];
      await page.check(`input[type=checkbox][value="${id}"]`);
      await page.locator(`#passkeys-file:has-text("${id}")`).waitFor();
      seen.file = await page.textContent("#passkeys-file");
      if (step.shot) await shot(page, step.shot);
      // The private key stays in the virtual authenticator, which closes with this browser:
      // the later steps load it again into theirs.
      const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
      // Its signature counter too: an assertion must count past the registered value.
      seen.passkey = {
        credentialId: credentials[0].credentialId,
        privateKey: credentials[0].privateKey,
        signCount: credentials[0].signCount,
      };
    } else if (step.action === "new-vault") {
      // An operator creates a vault with the form; the page then follows its key generation.
      await page.goto(`${step.base}/console/#/vaults`);
      await page.waitForSelector("#new-vault");
      await page.fill("#vault-name", step.vault.name);
      await page.selectOption("#vault-scheme", step.vault.scheme);
      for (const d of step.vault.devices) await page.check(`#new-vault input[aria-label="${d}"]`);
      await page.fill("#vault-threshold", String(step.vault.threshold));
      if (step.shot) await shot(page, step.shot);
      await page.click("#new-vault button[type=submit]");
      await page.waitForURL(/#\/operation\//);
      await page.waitForSelector("h1 .state");
      seen.operationId = new URL(page.url()).hash.split("/")[2];
    } else if (step.action === "request-message") {
      await page.goto(`${step.base}/console/#/sign/${step.vaultId}`);
      await page.waitForSelector("#request-signature");
      await page.selectOption("#kind", "message");
      await page.fill("#text", step.message);
      if (step.shot) await shot(page, step.shot);
      await page.click("#request-signature button[type=submit]");
      await page.waitForURL(/#\/operation\//);
      await page.waitForSelector("h1 .state");
      seen.operationId = new URL(page.url()).hash.split("/")[2];
    } else if (step.action === "look") {
      for (const view of ["operations", "vaults", "devices", "audit"]) {
        await page.goto(`${step.base}/console/#/${view}`);
        await page.waitForSelector("main h1");
        await page.waitForTimeout(300);
        await shot(page, view, view !== "audit");
      }
    } else {
      await page.goto(`${step.base}/console/#/operation/${step.operationId}`);
      const card = page.locator(`.human[data-device="${step.deviceId}"]`);
      await card.waitFor();
      seen.request = await card.locator("pre.request").textContent();
      if (await page.locator("#message").count()) seen.message = await page.textContent("#message");
      if (step.shot === "signature") await shot(page, "approval");
      await card.locator(step.action === "approve" ? "button.approve" : "button.reject").click();
      await card.locator("p.notice, p.error").waitFor();
      seen.status = await card.locator("p.notice, p.error").textContent();
      if (!seen.status.includes("was sent")) throw new Error(`the answer was not sent: ${seen.status}`);
      // The page follows the operation live (server-sent events), without a reload.
      await page.locator(`h1 .state.${step.expect}`).waitFor({ timeout: 60000 });
      seen.final = step.expect;
      if (await page.locator("#signature").count()) {
        seen.signature = await page.textContent("#signature");
        await page.locator("#verified.verified").waitFor({ timeout: 10000 });
        seen.verified = await page.textContent("#verified");
      }
      if (step.shot) await shot(page, step.shot);
    }
    console.log(JSON.stringify(seen));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
