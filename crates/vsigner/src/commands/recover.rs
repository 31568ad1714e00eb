//! `vsigner recover`: rebuilds a vault's key offline from the `.dr` files of a threshold of
//! its devices and the operator's ML-KEM-768 private key, and prints what a wallet needs.
//! `vsigner recover keygen`: makes such a key pair (OpenSSL ≥ 3.5 makes the same).
//! No network: nothing here talks to the coordinator or a broker.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;
use vsigner_recovery::{reconstruct, wallet, Curve, DrFile, DrPrivateKey, RecoveryError, Share, Shares};
use zeroize::Zeroizing;

/// Where the Ethereum keystore's passphrase is read when it is not prompted for.
const KEYSTORE_PASSPHRASE_ENV: &str = "VSIGNER_RECOVERED_KEYSTORE_PASSPHRASE";

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct RecoverArgs {
    /// `keygen`; without a subcommand, recover from FILES.
    #[command(subcommand)]
    command: Option<RecoverCommand>,
    /// The operator's ML-KEM-768 private key (PEM PKCS#8).
    #[arg(long, required = false)]
    private_key: Option<PathBuf>,
    /// The `.dr` files of one vault and generation, from at least the threshold of shares.
    files: Vec<PathBuf>,
    /// secp256k1: also write an encrypted Ethereum keystore (v3) to this file; its
    /// passphrase from VSIGNER_RECOVERED_KEYSTORE_PASSPHRASE or asked twice on the terminal.
    #[arg(long)]
    ethereum_keystore: Option<PathBuf>,
    /// The vault's public key as your records have it (hex, compressed), or for secp256k1
    /// its Ethereum address: recovery fails unless the files rebuild that key. The files are
    /// not signed (anyone with the public DR key can write one), so check against records.
    #[arg(long)]
    expect_public_key: Option<String>,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum RecoverCommand {
    /// Make an ML-KEM-768 key pair for disaster recovery: the public key that `.dr` files are
    /// encrypted to, the private key (mode 0600) for the safe.
    Keygen {
        /// Where to write the private key (PEM PKCS#8); refused if it exists.
        #[arg(long)]
        private_key: PathBuf,
        /// Where to write the public key (PEM SubjectPublicKeyInfo).
        #[arg(long)]
        public_key: PathBuf,
    },
}

pub(crate) fn run(args: RecoverArgs) -> anyhow::Result<()> {
    if let Some(RecoverCommand::Keygen {
        private_key,
        public_key,
    }) = args.command
    {
        return keygen(&private_key, &public_key);
    }
    let key_path = args
        .private_key
        .as_deref()
        .context("give the operator's private key with --private-key FILE")?;
    if args.files.is_empty() {
        bail!("give the .dr files of the vault's devices");
    }
    let pem = Zeroizing::new(
        std::fs::read_to_string(key_path).with_context(|| format!("cannot read {}", key_path.display()))?,
    );
    let key = DrPrivateKey::from_pem(&pem).with_context(|| key_path.display().to_string())?;
    let recovered = recover(&key, &args.files)?;
    if args.ethereum_keystore.is_some() && recovered.curve != Curve::Secp256k1 {
        bail!("--ethereum-keystore is for secp256k1 vaults");
    }
    let public_hex = hex::encode(&recovered.key.public_key);
    match &args.expect_public_key {
        Some(expected) => {
            let expected = expected.trim().to_ascii_lowercase();
            let address = (recovered.curve == Curve::Secp256k1)
                .then(|| wallet::ethereum_address(&recovered.key.public_key))
                .transpose()?
                .map(|a| a.to_ascii_lowercase());
            if expected != public_hex && Some(&expected) != address.as_ref() {
                bail!("the files rebuild the public key {public_hex}, not the expected {expected:?}: they are not this vault's");
            }
        }
        None => eprintln!(
            "note: the .dr files are not signed; compare the public key {public_hex} with your records (or give --expect-public-key)"
        ),
    }
    let out = describe(&recovered, args.ethereum_keystore.as_deref())?;
    if args.ethereum_keystore.is_none() {
        eprintln!("warning: the output below holds the vault's private key; keep it offline");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (k, v) in out.as_object().into_iter().flatten() {
            let v = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
            println!("{k:<20} {v}");
        }
    }
    Ok(())
}

struct Recovered {
    file: DrFile,
    curve: Curve,
    threshold: u32,
    shares_used: usize,
    key: vsigner_recovery::VaultKey,
}

fn recover(key: &DrPrivateKey, paths: &[PathBuf]) -> anyhow::Result<Recovered> {
    let mut first: Option<(PathBuf, DrFile)> = None;
    let mut threshold = None;
    let mut public_key = None;
    let mut shares: Vec<Share> = Vec::new();
    // The file each share came from (the first that held it).
    let mut owners: Vec<String> = Vec::new();
    for path in paths {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {name}"))?;
        let file = DrFile::parse(&bytes).with_context(|| name.clone())?;
        let curve = Curve::from_envelope(&file.algo, &file.curve).with_context(|| name.clone())?;
        if let Some((first_path, f)) = &first {
            let other = first_path.display();
            if f.vault_id != file.vault_id {
                bail!(
                    "{name} is of vault {:?}, {other} of vault {:?}: give the files of one vault",
                    file.vault_id,
                    f.vault_id
                );
            }
            if f.request_id != file.request_id {
                bail!(
                    "{name} holds the shares made by {:?}, {other} those made by {:?}: give the files of one generation",
                    file.request_id,
                    f.request_id
                );
            }
            if (f.algo.as_str(), f.curve.as_str()) != (file.algo.as_str(), file.curve.as_str()) {
                bail!(
                    "{name} is a {:?} {:?} file, {other} a {:?} {:?} one",
                    file.algo,
                    file.curve,
                    f.algo,
                    f.curve
                );
            }
        }
        let plaintext = file.open(key).with_context(|| name.clone())?;
        let parsed = Shares::parse(&plaintext, curve).with_context(|| name.clone())?;
        if parsed.vault_id != file.vault_id {
            bail!(
                "{name}: its shares are of vault {:?}, its envelope says {:?}",
                parsed.vault_id,
                file.vault_id
            );
        }
        match threshold {
            None => threshold = Some(parsed.threshold),
            Some(t) if t == parsed.threshold => {}
            Some(t) => bail!(
                "{name} says {} shares sign, the other files {t}",
                parsed.threshold
            ),
        }
        match &public_key {
            None => public_key = Some(parsed.public_key),
            Some(pk) if *pk == parsed.public_key => {}
            Some(_) => bail!("{name} names another public key than the other files"),
        }
        for share in parsed.shares {
            match shares.iter().find(|s| s.id == share.id) {
                None => {
                    shares.push(share);
                    owners.push(name.clone());
                }
                Some(known) if *known.value == *share.value => {}
                Some(_) => bail!(
                    "{name} holds another value for a share another file holds: one of them was changed"
                ),
            }
        }
        first.get_or_insert((path.clone(), file));
    }
    let (Some((_, file)), Some(threshold), Some(public_key)) = (first, threshold, public_key) else {
        bail!("no file");
    };
    let curve = Curve::from_envelope(&file.algo, &file.curve)?;
    let shares_used = shares.len().min(threshold as usize);
    let key = match reconstruct(curve, threshold, &shares, &public_key) {
        Err(RecoveryError::Mismatch) if shares.len() > shares_used => {
            // More shares than needed: a bad or foreign file among them need not stop the
            // recovery. Try the other subsets and name what had to be left out.
            let (key, left_out) = first_fitting_subset(curve, threshold, &shares, &public_key)
                .ok_or(RecoveryError::Mismatch)?;
            let files: std::collections::BTreeSet<&str> =
                left_out.iter().map(|&i| owners[i].as_str()).collect();
            eprintln!(
                "warning: left out shares that do not fit the vault's public key, from: {}",
                files.into_iter().collect::<Vec<_>>().join(", ")
            );
            key
        }
        other => other?,
    };
    Ok(Recovered {
        file,
        curve,
        threshold,
        shares_used,
        key,
    })
}

/// Subsets of shares tried at the most when some do not fit.
const MAX_SUBSETS: usize = 10_000;

/// The key of the first `threshold`-subset of `shares` that rebuilds `public_key`, and the
/// indices of the shares outside it (which include the ones that do not fit).
fn first_fitting_subset(
    curve: Curve,
    threshold: u32,
    shares: &[Share],
    public_key: &([u8; 32], [u8; 32]),
) -> Option<(vsigner_recovery::VaultKey, Vec<usize>)> {
    let t = threshold as usize;
    let mut pick: Vec<usize> = (0..t).collect();
    for _ in 0..MAX_SUBSETS {
        let subset: Vec<Share> = pick.iter().map(|&i| shares[i].clone()).collect();
        if let Ok(key) = reconstruct(curve, threshold, &subset, public_key) {
            let left_out = (0..shares.len()).filter(|i| !pick.contains(i)).collect();
            return Some((key, left_out));
        }
        // The next combination in lexicographic order.
        let n = shares.len();
        let i = (0..t).rev().find(|&i| pick[i] < n - t + i)?;
        pick[i] += 1;
        for j in i + 1..t {
            pick[j] = pick[j - 1] + 1;
        }
    }
    None
}

fn describe(r: &Recovered, keystore: Option<&Path>) -> anyhow::Result<serde_json::Value> {
    let mut out = json!({
        "vaultId": r.file.vault_id,
        "generation": r.file.request_id,
        "scheme": format!("{} {}", r.curve.algo(), r.curve.envelope_name()),
        "threshold": r.threshold,
        "sharesUsed": r.shares_used,
        "publicKey": hex::encode(&r.key.public_key),
    });
    let o = out.as_object_mut().context("an object")?;
    match r.curve {
        Curve::Secp256k1 => {
            o.insert(
                "ethereumAddress".into(),
                wallet::ethereum_address(&r.key.public_key)?.into(),
            );
            if let Some(path) = keystore {
                // The key goes only into the encrypted keystore, not to the output too.
                let passphrase = super::passphrase::new_passphrase(
                    KEYSTORE_PASSPHRASE_ENV,
                    "passphrase of the Ethereum keystore: ",
                )?;
                let doc = wallet::ethereum_keystore(&r.key, &passphrase, wallet::KEYSTORE_SCRYPT_LOG_N)?;
                write_new(path, doc.to_string().as_bytes())?;
                o.insert("ethereumKeystore".into(), path.display().to_string().into());
            } else {
                o.insert("privateKey".into(), hex::encode(r.key.secret.as_ref()).into());
                o.insert("bitcoinWif".into(), wallet::wif(&r.key.secret).as_str().into());
            }
        }
        Curve::Secp256r1 => {
            o.insert("pkcs8".into(), wallet::p256_pkcs8_pem(&r.key)?.as_str().into());
        }
        Curve::Ed25519 => {
            o.insert(
                "expandedSecretKey".into(),
                hex::encode(wallet::ed25519_expanded_key(&r.key).as_ref()).into(),
            );
            o.insert(
                "note".into(),
                "a threshold EdDSA key has no seed: this is an RFC 8032 expanded key (the secret scalar, little-endian, then a fresh random nonce prefix that must stay secret); import it only into a tool that takes an expanded key without clamping the scalar (ed25519-dalek: hazmat::ExpandedSecretKey built from its two halves); seed-only wallets cannot take it".into(),
            );
        }
        Curve::Bip340 => {
            o.insert(
                "xOnlyPublicKey".into(),
                hex::encode(&r.key.public_key[1..]).into(),
            );
            o.insert("privateKey".into(), hex::encode(r.key.secret.as_ref()).into());
            o.insert("bitcoinWif".into(), wallet::wif(&r.key.secret).as_str().into());
        }
    }
    Ok(out)
}

/// Writes a new file (refusing to replace one), readable by its owner only.
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist)", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

fn keygen(private_key: &Path, public_key: &Path) -> anyhow::Result<()> {
    for path in [private_key, public_key] {
        if path.exists() {
            bail!("{} exists: keygen never replaces a key", path.display());
        }
    }
    let key = DrPrivateKey::generate();
    write_new(private_key, key.to_pem()?.as_bytes())?;
    write_new(public_key, key.public_key().to_pem()?.as_bytes())?;
    println!(
        "wrote the private key to {} (keep it offline) and the public key to {} (the key .dr files are encrypted to)",
        private_key.display(),
        public_key.display()
    );
    Ok(())
}
