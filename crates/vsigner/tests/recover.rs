//! `vsigner recover` as an operator runs it in a recovery drill, offline: a key pair from
//! `recover keygen`, `.dr` files of a 2-of-3 secp256k1 vault (written here with the library,
//! as each device writes its own), the key rebuilt from any two and checked against the
//! vault's public key; one file is not enough, another key or another vault's file is refused,
//! each in one sentence.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use generic_ec::curves::Secp256k1;
use generic_ec::{Point, Scalar};
use vsigner_recovery::{affine_coordinates, Curve, DrFile, DrHeader, DrPublicKey, Share, Shares};

fn vsigner(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vsigner"))
        .args(args)
        .output()
        .unwrap()
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, DrPublicKey) {
    let (private, public) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub")));
    let out = vsigner(&[
        "recover",
        "keygen",
        "--private-key",
        private.to_str().unwrap(),
        "--public-key",
        public.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&private).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let public = DrPublicKey::from_pem(&std::fs::read_to_string(public).unwrap()).unwrap();
    (private, public)
}

/// The `.dr` files of a 2-of-3 secp256k1 vault: the secret and one file per device.
fn vault_files(dir: &Path, vault: &str, key: &DrPublicKey) -> (Scalar<Secp256k1>, Vec<PathBuf>) {
    let a0 = Scalar::<Secp256k1>::random(&mut rand_core::OsRng);
    let a1 = Scalar::<Secp256k1>::random(&mut rand_core::OsRng);
    let public = Point::<Secp256k1>::generator() * a0;
    let coordinates = affine_coordinates(Curve::Secp256k1, &public.to_bytes(true)).unwrap();
    let files = (1u64..=3)
        .map(|x| {
            let xs = Scalar::<Secp256k1>::from(x);
            let mut id = [0u8; 32];
            id.copy_from_slice(&xs.to_be_bytes());
            let mut value = zeroize::Zeroizing::new([0u8; 32]);
            value.copy_from_slice(&(a0 + a1 * xs).to_be_bytes());
            let plain = Shares {
                vault_id: vault.into(),
                curve: Curve::Secp256k1,
                threshold: 2,
                public_key: coordinates,
                shares: vec![Share { id, value }],
            };
            let header = DrHeader {
                vault_id: vault.into(),
                request_id: "op_keygen".into(),
                previous_request_id: None,
                algo: "ECDSA".into(),
                curve: "secp256k1".into(),
            };
            let file = DrFile::seal(key, header, &plain.to_json().unwrap()).unwrap();
            let device_dir = dir.join(format!("device-{x}"));
            std::fs::create_dir_all(&device_dir).unwrap();
            let path = device_dir.join(Curve::Secp256k1.file_name(vault));
            std::fs::write(&path, file.to_json()).unwrap();
            path
        })
        .collect();
    (a0, files)
}

#[test]
fn a_recovery_drill_rebuilds_the_vault_key_from_any_two_files() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = keygen(dir.path(), "dr");
    let (secret, files) = vault_files(dir.path(), "vlt_drill", &public);
    let expected_address = {
        let pk =
            k256::PublicKey::from_sec1_bytes(&(Point::<Secp256k1>::generator() * secret).to_bytes(false))
                .unwrap();
        let point = k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&pk, false);
        let hash = <sha3::Keccak256 as sha3::Digest>::digest(&point.as_bytes()[1..]);
        hex::encode(&hash[12..])
    };
    let p = |p: &PathBuf| p.to_str().unwrap().to_owned();
    for pair in [[0, 1], [1, 2], [0, 2]] {
        let out = vsigner(&[
            "recover",
            "--json",
            "--private-key",
            &p(&private),
            &p(&files[pair[0]]),
            &p(&files[pair[1]]),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["privateKey"], hex::encode(secret.to_be_bytes()));
        assert_eq!(
            doc["ethereumAddress"].as_str().unwrap().to_lowercase(),
            format!("0x{expected_address}")
        );
        assert_eq!(
            (doc["threshold"].as_u64(), doc["sharesUsed"].as_u64()),
            (Some(2), Some(2))
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("holds the vault's private key"));
    }

    // Against the operator's records: the right address passes, another key is refused.
    let files01 = [p(&files[0]), p(&files[1])];
    let with = |extra: &[&str]| {
        let mut args = vec!["recover", "--json", "--private-key", private.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend(files01.iter().map(String::as_str));
        vsigner(&args)
    };
    let address = format!("0x{expected_address}");
    assert!(with(&["--expect-public-key", &address]).status.success());
    let out = with(&["--expect-public-key", "02aa"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the expected"));
    // With an encrypted keystore, the key is written there only, not printed.
    let keystore = dir.path().join("keystore.json");
    let out = Command::new(env!("CARGO_BIN_EXE_vsigner"))
        .args([
            "recover",
            "--json",
            "--private-key",
            private.to_str().unwrap(),
            "--ethereum-keystore",
        ])
        .arg(&keystore)
        .args(&files01)
        .env("VSIGNER_RECOVERED_KEYSTORE_PASSPHRASE", "a drill passphrase")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        !printed.contains(&hex::encode(secret.to_be_bytes())) && !printed.contains("bitcoinWif"),
        "{printed}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&keystore).unwrap()).unwrap();
    assert_eq!(doc["address"], expected_address);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&keystore).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // A planted file (same vault, generation and public key, a share of nothing) listed
    // first among three: the recovery leaves it out, names it, and still succeeds.
    let planted = {
        let vault_public = Point::<Secp256k1>::generator() * secret;
        let mut id = [0u8; 32];
        id[31] = 9;
        let value = zeroize::Zeroizing::new(
            Scalar::<Secp256k1>::random(&mut rand_core::OsRng)
                .to_be_bytes()
                .as_bytes()
                .try_into()
                .unwrap(),
        );
        let plain = Shares {
            vault_id: "vlt_drill".into(),
            curve: Curve::Secp256k1,
            threshold: 2,
            public_key: affine_coordinates(Curve::Secp256k1, &vault_public.to_bytes(true)).unwrap(),
            shares: vec![Share { id, value }],
        };
        let header = DrHeader {
            vault_id: "vlt_drill".into(),
            request_id: "op_keygen".into(),
            previous_request_id: None,
            algo: "ECDSA".into(),
            curve: "secp256k1".into(),
        };
        let path = dir.path().join("planted.dr");
        std::fs::write(
            &path,
            DrFile::seal(&public, header, &plain.to_json().unwrap())
                .unwrap()
                .to_json(),
        )
        .unwrap();
        path
    };
    let out = vsigner(&[
        "recover",
        "--json",
        "--private-key",
        &p(&private),
        &p(&planted),
        &p(&files[0]),
        &p(&files[1]),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["privateKey"], hex::encode(secret.to_be_bytes()));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("left out") && said.contains("planted.dr") && !said.contains("device-1"),
        "{said}"
    );

    let refused = |args: &[&str]| -> String {
        let out = vsigner(args);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(stderr.trim().lines().count(), 1, "one sentence: {stderr}");
        stderr
    };
    let e = refused(&["recover", "--private-key", &p(&private), &p(&files[0])]);
    assert!(e.contains("1 shares of the 2 needed: 1 more"), "{e}");
    let (other_key, _) = keygen(dir.path(), "other");
    let e = refused(&[
        "recover",
        "--private-key",
        &p(&other_key),
        &p(&files[0]),
        &p(&files[1]),
    ]);
    assert!(e.contains("not encrypted to this private key"), "{e}");
    let (_, foreign) = vault_files(&dir.path().join("foreign"), "vlt_other", &public);
    let e = refused(&[
        "recover",
        "--private-key",
        &p(&private),
        &p(&files[0]),
        &p(&foreign[1]),
    ]);
    assert!(
        e.contains("of vault \"vlt_other\"") && e.contains("give the files of one vault"),
        "{e}"
    );
    let truncated = dir.path().join("truncated.dr");
    let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&files[1]).unwrap()).unwrap();
    doc["dataB64"] = serde_json::Value::from(&doc["dataB64"].as_str().unwrap()[..400]);
    std::fs::write(&truncated, doc.to_string()).unwrap();
    let e = refused(&[
        "recover",
        "--private-key",
        &p(&private),
        &p(&files[0]),
        &p(&truncated),
    ]);
    assert!(e.contains("truncated"), "{e}");
}
