//! A new passphrase for a command (`keystore rekey`, `recover --ethereum-keystore`): from an
//! environment variable, or asked twice on the terminal without echo; never a command-line
//! argument, which other users see in `ps`.

use anyhow::{bail, Context};
use zeroize::Zeroizing;

/// The passphrase in `env`, or one typed twice after `prompt`.
pub(crate) fn new_passphrase(env: &str, prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var(env) {
        return Ok(Zeroizing::new(p));
    }
    let first = Zeroizing::new(
        rpassword::prompt_password(prompt)
            .with_context(|| format!("cannot read a passphrase from the terminal; set {env}"))?,
    );
    let again = Zeroizing::new(rpassword::prompt_password("again: ")?);
    if first.as_str() != again.as_str() {
        bail!("the two passphrases differ");
    }
    Ok(first)
}
