// Drives the vsigner console in Debian's Chromium (playwright-core, no downloaded browser)
// for crates/vsigner/tests/daemon/console.rs. One step per run; the arguments come as JSON
// in VSIGNER_CONSOLE_STEP:
//   {"base", "organisationId", "name", "password", "passkey": {"credentialId", "privateKey"},
//    "action": "register" | "prove" | "new-vault" | "request-message" | "request-eth" | "reshare" | "approve" |
//      "reject" | "read" (an operation's approval card, unanswered) | "look", "operationId", "deviceId", "expect", "tamper": {"from", "to"},
//    "screenshots": dir or null, "shot": file name prefix}
// With "tamper", the page is served another request than the device posted (as a lying
// coordinator or network would): every `from` in the GraphQL answers becomes `to`.
// Chromium's virtual authenticator (CDP WebAuthn domain) holds the passkey and verifies the
// "user" (it stands in for the biometric check). Prints one JSON line with what it saw.
const path = require("path");
const { chromium } = require(path.join(process.env.VSIGNER_TEST_NODE_MODULES, "playwright-core"));

const step = JSON.parse(process.env.VSIGNER_CONSOLE_STEP);
const seen = {};

// Submits form `#id` (after its screenshot) and returns the operation the page then follows.
async function submit(page, id) {
  if (step.shot) await shot(page, step.shot);
  await page.click(`#${id} button[type=submit]`);
  await page.waitForURL(/#\/operation\//);
  await page.waitForSelector("h1 .state");
  return new URL(page.url()).hash.split("/")[2];
}

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
  let page;
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    page = await context.newPage();
    page.on("console", (m) => m.type() === "error" && console.error(`page: ${m.text()} ${JSON.stringify(m.location())}`));
    page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
    page.on("response", (r) => r.status() === 404 && console.error(`404: ${r.url()}`));
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
      seen.operationId = await submit(page, "new-vault");
    } else if (step.action === "request-message") {
      await page.goto(`${step.base}/console/#/sign/${step.vaultId}`);
      await page.waitForSelector("#request-signature");
      await page.selectOption("#kind", "message");
      await page.fill("#text", step.message);
      seen.operationId = await submit(page, "request-signature");
    } else if (step.action === "request-eth") {
      // An EIP-1559 transaction, encoded in the page (assets/eth.js).
      await page.goto(`${step.base}/console/#/sign/${step.vaultId}`);
      await page.waitForSelector("#request-signature");
      await page.selectOption("#kind", "eth");
      for (const [field, value] of Object.entries(step.tx)) await page.fill(`#${field}`, value);
      seen.operationId = await submit(page, "request-signature");
    } else if (step.action === "reshare") {
      // An operator moves a vault's key to new signers with the form.
      await page.goto(`${step.base}/console/#/reshare/${step.vaultId}`);
      await page.waitForSelector("#reshare");
      for (const box of await page.locator("#reshare input[name=signer]").all()) {
        const name = await box.getAttribute("aria-label");
        if (step.devices.includes(name)) await box.check();
        else await box.uncheck();
      }
      await page.fill("#reshare-threshold", String(step.threshold));
      seen.operationId = await submit(page, "reshare");
    } else if (step.action === "prove") {
      // The person proves their entry of a passkeys file by possession.
      await page.goto(`${step.base}/console/#/passkeys`);
      await page.fill("#proof-file", step.file);
      await page.click("#prove");
      await page.locator("#proof td.status.verified, #proof td.status.error, #proof-file ~ p.error:not(:empty)").first().waitFor();
      seen.proof = (await page.locator("#proof td.status.verified, #proof td.status.error").allTextContents()).join("\n");
      seen.summary = await page.locator("#proof-summary").textContent();
      seen.error = await page.locator("#proof-file ~ p.error").textContent();
      if (step.shot) await shot(page, step.shot);
    } else if (step.action === "password") {
      // The person changes their own password on their account page.
      await page.click("#who-name");
      await page.waitForSelector("#change-password");
      await page.fill("#current-password", step.password);
      await page.fill("#new-password", step.newPassword);
      await page.fill("#repeat-password", step.newPassword);
      if (step.shot) await shot(page, step.shot);
      await page.click("#change-password button[type=submit]");
      await page.locator("#change-password p.notice, #change-password p.error:not(:empty)").first().waitFor();
      seen.status = await page.locator("#change-password p.notice").textContent().catch(() => null);
      seen.error = await page.locator("#change-password p.error").textContent();
    } else if (step.action === "whoami") {
      // Signing in is the step.
    } else if (step.action === "look") {
      for (const view of ["operations", "vaults", "devices", "audit"]) {
        await page.goto(`${step.base}/console/#/${view}`);
        await page.waitForSelector("main h1");
        await page.waitForTimeout(300);
        if (view === "audit") {
          // Every device signature in the log, checked in the page.
          await page.click("#verify-audit");
          await page.locator("#audit-verified p.verified, #audit-verified p.error").first().waitFor();
          seen.audit = await page.locator("#audit-verified p").first().textContent();
        }
        await shot(page, view, view !== "audit");
      }
    } else {
      if (step.tamper) {
        await page.route("**/graphql", async (route) => {
          const response = await route.fetch();
          const body = (await response.text()).split(step.tamper.from).join(step.tamper.to);
          await route.fulfill({ response, body });
        });
      }
      await page.goto(`${step.base}/console/#/operation/${step.operationId}`);
      const card = page.locator(`.human[data-device="${step.deviceId}"]`);
      await card.waitFor();
      seen.request = await card.locator("pre.request").textContent();
      seen.summary = await card.locator("dl.summary").textContent();
      seen.differs = (await card.locator("#request-differs").count()) ? await card.locator("#request-differs").textContent() : null;
      if (await page.locator("#message").count()) seen.message = await page.textContent("#message");
      if (step.action === "read") {
        console.log(JSON.stringify(seen));
        return;
      }
      if (step.shot === "signature") await shot(page, "approval");
      await card.locator(step.action === "approve" ? "button.approve" : "button.reject").click();
      await card.locator("p.notice, p.error").waitFor();
      seen.status = await card.locator("p.notice, p.error").textContent();
      if (!seen.status.includes("was sent")) throw new Error(`the answer was not sent: ${seen.status}`);
      if (!step.expect) {
        console.log(JSON.stringify(seen));
        return;
      }
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
  } catch (e) {
    // What the page showed when the step failed.
    if (page) console.error(`the page showed:\n${await page.locator("main").innerText().catch(() => "(nothing)")}`);
    throw e;
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
