//! The `.dr` format and the reconstruction, each from the outside: keys in every PEM form
//! OpenSSL writes, files that open only with their key and say what is wrong otherwise, the
//! share plaintext's decimal integers, and vault keys rebuilt from every threshold subset of
//! shares of a random polynomial on each curve.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use generic_ec::curves::{Ed25519, Secp256k1, Secp256r1};
use generic_ec::{Curve as EcCurve, Point, Scalar};
use vsigner_recovery::{
    affine_coordinates, reconstruct, Curve, DrFile, DrHeader, DrPrivateKey, DrPublicKey, RecoveryError,
    Share, Shares,
};

fn header() -> DrHeader {
    DrHeader {
        vault_id: "vlt_1".into(),
        request_id: "op_1".into(),
        previous_request_id: None,
        algo: "ECDSA".into(),
        curve: "secp256k1".into(),
    }
}

#[test]
fn keys_read_back_in_every_pem_form() {
    let key = DrPrivateKey::generate();
    let public = key.public_key();
    assert_eq!(public.to_bytes().len(), 1184);
    let pem = key.to_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(DrPrivateKey::from_pem(&pem).unwrap().public_key(), public);
    assert_eq!(DrPublicKey::from_pem(&public.to_pem().unwrap()).unwrap(), public);

    // OpenSSL's default form: SEQUENCE { seed, expandedKey }.
    assert_eq!(
        DrPrivateKey::from_pem(&both_form(&pem, None))
            .unwrap()
            .public_key(),
        public
    );
    let mut changed = expanded_of(&pem);
    changed[100] ^= 1;
    let e = DrPrivateKey::from_pem(&both_form(&pem, Some(changed)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not the one its seed derives"), "{e}");

    // Not a key: one sentence, no key material.
    let e =
        DrPrivateKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").unwrap_err();
    assert!(e.to_string().starts_with("not an ML-KEM-768 private key"), "{e}");
    let e = DrPublicKey::from_pem(&pem).unwrap_err();
    assert!(e.to_string().starts_with("not an ML-KEM-768 public key"), "{e}");
    assert_eq!(format!("{key:?}"), "DrPrivateKey(<redacted>)");
}

/// The seed of a seed-form PEM.
fn seed_of(pem: &str) -> Vec<u8> {
    use pkcs8::der::Decode;
    let der = pkcs8::SecretDocument::from_pem(pem).unwrap().1;
    let info = pkcs8::PrivateKeyInfoRef::from_der(der.as_bytes()).unwrap();
    let seed_form = info.private_key.as_bytes();
    assert_eq!(&seed_form[..2], &[0x80, 64]);
    seed_form[2..].to_vec()
}

/// The expanded key of a seed-form PEM.
fn expanded_of(pem: &str) -> Vec<u8> {
    let seed = seed_of(pem);
    #[allow(deprecated)]
    let expanded =
        ml_kem::ExpandedKeyEncoding::to_expanded_bytes(
            &ml_kem::DecapsulationKey::<ml_kem::MlKem768>::from_seed(seed.as_slice().try_into().unwrap()),
        );
    expanded.to_vec()
}

/// The same key in OpenSSL's default form, SEQUENCE { seed, expandedKey }, built by hand
/// (with another expanded key when given).
fn both_form(pem: &str, expanded: Option<Vec<u8>>) -> String {
    use pkcs8::der::{Decode, Encode};
    let seed = seed_of(pem);
    let expanded = expanded.unwrap_or_else(|| expanded_of(pem));
    let body = [
        pkcs8::der::asn1::OctetStringRef::new(&seed)
            .unwrap()
            .to_der()
            .unwrap(),
        pkcs8::der::asn1::OctetStringRef::new(&expanded)
            .unwrap()
            .to_der()
            .unwrap(),
    ]
    .concat();
    let mut seq = vec![0x30];
    seq.extend_from_slice(
        &pkcs8::der::Length::try_from(body.len())
            .unwrap()
            .to_der()
            .unwrap(),
    );
    seq.extend_from_slice(&body);
    let der = pkcs8::SecretDocument::from_pem(pem).unwrap().1;
    let info = pkcs8::PrivateKeyInfoRef::from_der(der.as_bytes()).unwrap();
    let pki = pkcs8::PrivateKeyInfoRef::new(
        info.algorithm,
        pkcs8::der::asn1::OctetStringRef::new(&seq).unwrap(),
    );
    pem_of(&pki.to_der().unwrap())
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

#[test]
fn a_file_opens_with_its_key_only_and_says_what_is_wrong() {
    let key = DrPrivateKey::generate();
    let file = DrFile::seal(&key.public_key(), header(), b"the shares").unwrap();
    let parsed = DrFile::parse(&file.to_json()).unwrap();
    assert_eq!(parsed, file);
    assert_eq!(parsed.open(&key).unwrap().as_slice(), b"the shares");

    let other = DrPrivateKey::generate();
    assert!(matches!(parsed.open(&other), Err(RecoveryError::WrongKey)));
    assert!(parsed
        .open(&other)
        .unwrap_err()
        .to_string()
        .contains("not encrypted to this private key"));

    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD
        .decode(&file.data_b64)
        .unwrap();
    let mut truncated = file.clone();
    truncated.data_b64 = base64::engine::general_purpose::STANDARD.encode(&data[..1100]);
    let e = truncated.open(&key).unwrap_err().to_string();
    assert!(e.starts_with("truncated: dataB64 holds 1100 bytes"), "{e}");
    let mut flipped = data.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let mut changed = file.clone();
    changed.data_b64 = base64::engine::general_purpose::STANDARD.encode(&flipped);
    assert!(matches!(changed.open(&key), Err(RecoveryError::WrongKey)));

    let mut json: serde_json::Value = serde_json::from_slice(&file.to_json()).unwrap();
    json["formatVersion"] = 2.into();
    let e = DrFile::parse(json.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("formatVersion 2 is not supported"), "{e}");
    assert!(DrFile::parse(b"{")
        .unwrap_err()
        .to_string()
        .starts_with("not a .dr file"));
}

#[test]
fn the_plaintext_writes_integers_in_decimal_and_reads_them_back() {
    let max = [0xffu8; 32];
    let mut ten = [0u8; 32];
    ten[31] = 10;
    let shares = Shares {
        vault_id: "vlt_\"quoted\"".into(),
        curve: Curve::Secp256k1,
        threshold: 2,
        public_key: (max, ten),
        shares: vec![
            Share {
                id: ten,
                value: zeroize::Zeroizing::new(max),
            },
            Share {
                id: [0u8; 32],
                value: zeroize::Zeroizing::new([0u8; 32]),
            },
        ],
    };
    let json = shares.to_json().unwrap();
    let text = std::str::from_utf8(&json).unwrap();
    let max_dec = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
    assert!(text.contains(&format!("\"Xi\":{max_dec},\"ShareID\":10,\"ECDSAPub\":{{\"Curve\":\"secp256k1\",\"Coords\":[{max_dec},10]}}")), "{text}");
    assert!(text.contains("\"Xi\":0,\"ShareID\":0"), "{text}");
    assert!(
        text.ends_with("\"VaultId\":\"vlt_\\\"quoted\\\"\",\"Threshold\":1}"),
        "{text}"
    );
    let back = Shares::parse(&json, Curve::Secp256k1).unwrap();
    assert_eq!(
        (back.threshold, back.vault_id.as_str(), back.public_key),
        (2, "vlt_\"quoted\"", (max, ten))
    );
    assert_eq!(*back.shares[0].value, max);
    // 2^256 does not fit; an ed25519 file must carry EDDSAPub.
    let over = text.replacen(
        max_dec,
        "115792089237316195423570985008687907853269984665640564039457584007913129639936",
        1,
    );
    assert!(Shares::parse(over.as_bytes(), Curve::Secp256k1)
        .unwrap_err()
        .to_string()
        .contains("below 2^256"));
    assert!(Shares::parse(&json, Curve::Ed25519).is_err());
    assert!(!format!("{:?}", back.shares[0]).contains("ffff"));
}

/// Shares f(1..=n) of a random polynomial of degree t-1 with f(0) = the key.
fn deal<E: EcCurve>(t: usize, n: usize) -> (Scalar<E>, Vec<Share>) {
    let coefficients: Vec<Scalar<E>> = (0..t).map(|_| Scalar::random(&mut rand_core::OsRng)).collect();
    let shares = (1..=n as u64)
        .map(|x| {
            let x = Scalar::<E>::from(x);
            let y = coefficients
                .iter()
                .rev()
                .fold(Scalar::<E>::zero(), |acc, c| acc * x + c);
            let mut id = [0u8; 32];
            id.copy_from_slice(&x.to_be_bytes());
            let mut value = zeroize::Zeroizing::new([0u8; 32]);
            value.copy_from_slice(&y.to_be_bytes());
            Share { id, value }
        })
        .collect();
    (coefficients[0], shares)
}

fn check_curve<E: EcCurve>(curve: Curve) {
    let (t, n) = (2, 3);
    let (key, shares) = deal::<E>(t, n);
    let public = Point::<E>::generator() * key;
    let coordinates = affine_coordinates(curve, &public.to_bytes(true)).unwrap();
    for subset in [[0, 1], [0, 2], [1, 2], [2, 0]] {
        let picked: Vec<Share> = subset.iter().map(|&i| shares[i].clone()).collect();
        let rebuilt = reconstruct(curve, t as u32, &picked, &coordinates).unwrap();
        assert_eq!(
            &rebuilt.secret[..],
            &key.to_be_bytes()[..],
            "{curve:?} {subset:?}"
        );
        assert_eq!(rebuilt.public_key, public.to_bytes(true).to_vec());
    }
    let e = reconstruct(curve, t as u32, &shares[..1], &coordinates).unwrap_err();
    assert_eq!(e.to_string(), "1 shares of the 2 needed: 1 more");
    // A share of another vault (or generation) does not rebuild this key.
    let (_, foreign) = deal::<E>(t, n);
    let mixed = vec![shares[0].clone(), foreign[1].clone()];
    assert!(matches!(
        reconstruct(curve, t as u32, &mixed, &coordinates),
        Err(RecoveryError::Mismatch)
    ));
    let twice = vec![shares[0].clone(), shares[0].clone()];
    assert!(reconstruct(curve, t as u32, &twice, &coordinates).is_err());
}

#[test]
fn every_threshold_subset_rebuilds_the_key_on_every_curve() {
    check_curve::<Secp256k1>(Curve::Secp256k1);
    check_curve::<Secp256r1>(Curve::Secp256r1);
    check_curve::<Ed25519>(Curve::Ed25519);
    check_curve::<Secp256k1>(Curve::Bip340);
}

/// The format as another implementation reads it: `scripts/open-dr.py` opens a file written
/// here with kyber-py's ML-KEM-768 and the `cryptography` package's AES-256-GCM, and its JSON
/// parser reads the plaintext's integers.
#[test]
fn an_independent_implementation_opens_the_file_and_reads_the_shares() {
    let python_ok = std::process::Command::new("python3")
        .args(["-c", "import kyber_py, cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    if !python_ok {
        assert!(
            std::env::var_os("VSIGNER_TEST_REQUIRE_PYTHON").is_none(),
            "VSIGNER_TEST_REQUIRE_PYTHON is set (as .ci/run does) but python3 lacks kyber-py or cryptography"
        );
        eprintln!("skipped: python3 with kyber-py and cryptography is needed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = DrPrivateKey::generate();
    let (secret, shares) = deal::<Secp256k1>(2, 3);
    let public = Point::<Secp256k1>::generator() * secret;
    let plain = Shares {
        vault_id: "vlt_1".into(),
        curve: Curve::Secp256k1,
        threshold: 2,
        public_key: affine_coordinates(Curve::Secp256k1, &public.to_bytes(true)).unwrap(),
        shares: vec![shares[1].clone()],
    };
    let file = DrFile::seal(&key.public_key(), header(), &plain.to_json().unwrap()).unwrap();
    let key_path = dir.path().join("dr.key");
    let file_path = dir.path().join(Curve::Secp256k1.file_name("vlt_1"));
    std::fs::write(&key_path, key.to_pem().unwrap().as_bytes()).unwrap();
    std::fs::write(&file_path, file.to_json()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/open-dr.py");
    // The key in OpenSSL's default form opens it too.
    let both_path = dir.path().join("dr-both.key");
    std::fs::write(&both_path, both_form(&key.to_pem().unwrap(), None)).unwrap();
    let run = |key: &std::path::Path| {
        std::process::Command::new("python3")
            .arg(script)
            .arg(key)
            .arg(&file_path)
            .output()
            .unwrap()
    };
    let (out, both) = (run(&key_path), run(&both_path));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(both.status.success(), "{}", String::from_utf8_lossy(&both.stderr));
    assert_eq!(out.stdout, both.stdout);
    let opened: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(opened["envelope"]["kemSuite"], "ML-KEM-768+AES-256-GCM");
    assert_eq!(opened["envelope"]["vaultId"], "vlt_1");
    let plaintext = &opened["plaintext"];
    assert_eq!(plaintext["VaultId"], "vlt_1");
    assert_eq!(plaintext["Threshold"], 1);
    assert_eq!(plaintext["Data"][0]["ShareID"], 2);
    // The integers as Python read them, in decimal, are the ones written.
    let decimal = &opened["decimal"]["Data"][0];
    let digits = |be: &[u8; 32]| {
        be.iter()
            .fold(String::from("0"), |acc, b| times_256_plus(&acc, *b))
    };
    assert_eq!(decimal["Xi"], serde_json::Value::from(digits(&shares[1].value)));
    assert_eq!(decimal["ShareID"], "2");
    assert_eq!(
        decimal["ECDSAPub"]["Coords"][0],
        serde_json::Value::from(digits(&plain.public_key.0))
    );
    assert_eq!(decimal["ECDSAPub"]["Curve"], "secp256k1");
}

/// `decimal` × 256 + `b`, in decimal digits (schoolbook; for the test's comparison only).
fn times_256_plus(decimal: &str, b: u8) -> String {
    let mut carry = u32::from(b);
    let mut out: Vec<u8> = Vec::new();
    for d in decimal.bytes().rev() {
        let v = u32::from(d - b'0') * 256 + carry;
        out.push(b'0' + (v % 10) as u8);
        carry = v / 10;
    }
    while carry > 0 {
        out.push(b'0' + (carry % 10) as u8);
        carry /= 10;
    }
    while out.len() > 1 && out.last() == Some(&b'0') {
        out.pop();
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}

fn secp_key(secret_hex: &str) -> vsigner_recovery::VaultKey {
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    secret.copy_from_slice(&hex_bytes(secret_hex));
    let scalar = Scalar::<Secp256k1>::from_be_bytes_mod_order(*secret);
    vsigner_recovery::VaultKey {
        curve: Curve::Secp256k1,
        secret,
        public_key: (Point::<Secp256k1>::generator() * scalar).to_bytes(true).to_vec(),
    }
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn wallet_formats_match_published_vectors() {
    use vsigner_recovery::wallet;
    // web3.js's documented example key and address.
    let key = secp_key("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318");
    assert_eq!(
        wallet::ethereum_address(&key.public_key).unwrap(),
        "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
    );
    // The Bitcoin wiki's WIF example (compressed).
    let key = secp_key("0c28fca386c7a227600b2fe50b7cae11ec86d3bf1fbe471be89827e19d72aa1d");
    assert_eq!(
        wallet::wif(&key.secret).as_str(),
        "KwdMAjGmerYanjeui5SHS7JkmpZvVipYvB2LJGU1ZxJwYvP98617"
    );
}

/// eth_account (Python) decrypts the keystore to the same key and address.
#[test]
fn an_ethereum_keystore_decrypts_with_an_independent_wallet_library() {
    let python_ok = std::process::Command::new("python3")
        .args(["-c", "import eth_account"])
        .status()
        .is_ok_and(|s| s.success());
    if !python_ok {
        assert!(
            std::env::var_os("VSIGNER_TEST_REQUIRE_PYTHON").is_none(),
            "python3 lacks eth_account"
        );
        eprintln!("skipped: python3 with eth_account is needed");
        return;
    }
    let key = secp_key("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318");
    // A light scrypt for the test; `vsigner recover` uses geth's standard parameters.
    let keystore = vsigner_recovery::wallet::ethereum_keystore(&key, "recovery drill", 10).unwrap();
    let script = "import json, sys\nfrom eth_account import Account\nks = json.load(sys.stdin)\nk = Account.decrypt(ks, 'recovery drill')\nprint(k.hex().removeprefix('0x'), Account.from_key(k).address)";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(keystore.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318 0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
    );
}

/// Files are not authenticated: whatever they say must still make sense.
#[test]
fn forged_thresholds_and_coordinates_are_refused() {
    let (_, shares) = deal::<Ed25519>(2, 3);
    let public = Point::<Ed25519>::generator() * Scalar::<Ed25519>::random(&mut rand_core::OsRng);
    let (x, y) = affine_coordinates(Curve::Ed25519, &public.to_bytes(true)).unwrap();
    // Another x of the same parity.
    let mut other_x = x;
    other_x[0] ^= 0x40;
    let e = reconstruct(Curve::Ed25519, 2, &shares[..2], &(other_x, y)).unwrap_err();
    assert!(e.to_string().contains("not a point of ed25519"), "{e}");
    let e = reconstruct(Curve::Ed25519, 0, &[], &(x, y)).unwrap_err();
    assert!(e.to_string().contains("threshold of 0"), "{e}");
    // The identity point as the public key.
    let mut one = [0u8; 32];
    one[31] = 1;
    let e = reconstruct(Curve::Ed25519, 1, &shares[..1], &([0u8; 32], one)).unwrap_err();
    assert!(e.to_string().contains("identity"), "{e}");
    // A Threshold that would overflow.
    let plain = Shares {
        vault_id: "v".into(),
        curve: Curve::Ed25519,
        threshold: 2,
        public_key: (x, y),
        shares: shares[..1].to_vec(),
    };
    let json = String::from_utf8(plain.to_json().unwrap().to_vec()).unwrap();
    let forged = json.replace("\"Threshold\":1}", "\"Threshold\":4294967295}");
    let e = Shares::parse(forged.as_bytes(), Curve::Ed25519).unwrap_err();
    assert!(e.to_string().contains("not below"), "{e}");
}
