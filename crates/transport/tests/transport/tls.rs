//! TLS to the broker with `MQTTCACert`, and credentials: a private Mosquitto with a TLS
//! listener and a password file, certificates made by `openssl` for this test.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use vsigner_transport::{Link, MqttConfig};
use zeroize::Zeroizing;

use crate::common::{devices, free_port};

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl {args:?}");
}

/// A CA and a server certificate for 127.0.0.1 signed by it, plus an unrelated CA.
fn certificates(dir: &Path) {
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN=vsigner test {ca}"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_brokers_ca_and_a_password() {
    let have = |cmd: &str| {
        Command::new(cmd)
            .arg("-h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    if !have("mosquitto") || !have("openssl") || !have("mosquitto_passwd") {
        eprintln!(
            "SKIPPED: mosquitto, mosquitto_passwd or openssl missing (bash .ci/run installs mosquitto)"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("vsigner-tls-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    let status = Command::new("mosquitto_passwd")
        .args(["-c", "-b", "passwd", "signer", "s3cret-pass"])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let port = free_port();
    let d = dir.display();
    std::fs::write(
        dir.join("mosquitto.conf"),
        format!(
            "per_listener_settings false\nallow_anonymous false\npassword_file {d}/passwd\npersistence false\nuser root\n\
             log_dest none\nlistener {port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"
        ),
    )
    .unwrap();
    let mut child = Command::new("mosquitto")
        .arg("-c")
        .arg(dir.join("mosquitto.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let device = devices(1, "tls").remove(0);
    let config = |ca: &str, password: &str| {
        let mut c = MqttConfig::new(format!("mqtts://127.0.0.1:{port}"));
        c.ca_cert_pem = Some(std::fs::read(dir.join(ca)).unwrap());
        c.username = Some("signer".into());
        c.password = Some(Zeroizing::new(password.into()));
        c.connect_timeout = Duration::from_secs(3);
        c
    };
    let link = Link::connect(device.clone(), config("ca.pem", "s3cret-pass")).await;
    let ok = link.is_ok();
    let wrong_ca = Link::connect(device.clone(), config("other-ca.pem", "s3cret-pass")).await;
    let wrong_password = Link::connect(device.clone(), config("ca.pem", "wrong")).await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);

    assert!(
        ok,
        "TLS with the broker's CA and the right password connects: {:?}",
        link.err()
    );
    let err = wrong_ca.unwrap_err().to_string();
    assert!(err.contains("could not connect"), "{err}");
    let err = wrong_password.unwrap_err().to_string();
    assert!(
        err.contains("could not connect") && !err.contains("wrong"),
        "{err}"
    );
}

#[test]
fn bad_endpoints_and_ca_are_refused_naming_the_setting() {
    let device = devices(1, "cfg").remove(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (endpoint, key) in [
        ("http://x", "MQTTEndpoint"),
        ("not a url", "MQTTEndpoint"),
        ("mqtts://127.0.0.1:1", "MQTTCACert"),
    ] {
        let mut config = MqttConfig::new(endpoint);
        if key == "MQTTCACert" {
            config.ca_cert_pem = Some(b"not a certificate".to_vec());
        }
        let err = rt
            .block_on(Link::connect(device.clone(), config))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{endpoint}: {err}");
    }
    let mut config = MqttConfig::new("mqtt://user:hunter2@127.0.0.1:1");
    config.password = None;
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}
