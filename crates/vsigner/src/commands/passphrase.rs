//! A new passphrase for a command (`keystore rekey`, `recover --ethereum-keystore`): from an
//! environment variable, or asked twice on the terminal without echo; never a command-line
//! argument, which other users see in `ps`.

use anyhow::{bail, Context};
use zeroize::Zeroizing;

/// Shortest accepted new passphrase.
pub(crate) const MIN_LEN: usize = vsigner_signer::config::MIN_PASSPHRASE_LEN;

/// The passphrase in `env`, or one typed twice after `prompt`; at least [`MIN_LEN`]
/// characters.
pub(crate) fn new_passphrase(env: &str, prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    let passphrase = typed_or_from(env, prompt)?;
    if passphrase.chars().count() < MIN_LEN {
        bail!("the new passphrase must have at least {MIN_LEN} characters");
    }
    Ok(passphrase)
}

/// An existing passphrase: from `env`, or typed once after `prompt`.
pub(crate) fn passphrase(env: &str, prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    match std::env::var(env) {
        Ok(p) => Ok(Zeroizing::new(p)),
        Err(std::env::VarError::NotUnicode(_)) => bail!("{env} is not valid UTF-8"),
        Err(std::env::VarError::NotPresent) => Ok(Zeroizing::new(
            rpassword::prompt_password(prompt)
                .with_context(|| format!("cannot read a passphrase from the terminal; set {env}"))?,
        )),
    }
}

fn typed_or_from(env: &str, prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    match std::env::var(env) {
        Ok(p) => return Ok(Zeroizing::new(p)),
        Err(std::env::VarError::NotUnicode(_)) => bail!("{env} is not valid UTF-8"),
        Err(std::env::VarError::NotPresent) => {}
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
