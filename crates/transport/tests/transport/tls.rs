//! TLS to the broker with `MQTTCACert`, and credentials: a private Mosquitto with a TLS
//! listener and a password file, certificates made by `openssl` for this test.

use std::process::Command;
use std::time::Duration;

use vsigner_transport::{Link, MqttConfig};
use zeroize::Zeroizing;

use crate::common::{devices, free_port};
use crate::private_broker::{certificates, have, Mosquitto};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_brokers_ca_and_a_password() {
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
    let broker = Mosquitto::start(
        &dir,
        &format!(
            "per_listener_settings false\nallow_anonymous false\npassword_file {d}/passwd\npersistence false\nuser root\n\
             log_dest none\nlistener {port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"
        ),
        &[port],
    );

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
    drop(broker);
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

/// MQTT over WebSockets, plain and TLS (io.finnet's broker endpoint is `wss://…:8084`): a
/// private Mosquitto with a `ws` and a `wss` listener; three devices run FROST keygen and
/// sign through each, and a device that does not trust the broker's CA cannot connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_plain_and_tls_carry_a_signing() {
    if !have("mosquitto") || !have("openssl") {
        eprintln!("SKIPPED: mosquitto or openssl missing (bash .ci/run installs mosquitto)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("vsigner-ws-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    let (mqtt, ws, wss) = (free_port(), free_port(), free_port());
    let d = dir.display();
    // Mosquitto 2.0.11 refuses to start with WebSocket listeners only: a plain one too.
    let broker = Mosquitto::start(
        &dir,
        &format!(
            "per_listener_settings false\nallow_anonymous true\npersistence false\nuser root\nlog_dest none\n\
             listener {mqtt} 127.0.0.1\n\
             listener {ws} 127.0.0.1\nprotocol websockets\n\
             listener {wss} 127.0.0.1\nprotocol websockets\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"
        ),
        &[mqtt, ws, wss],
    );
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let other_ca = std::fs::read(dir.join("other-ca.pem")).unwrap();
    let wss_config = |ca: &[u8]| {
        let mut c = MqttConfig::new(format!("wss://127.0.0.1:{wss}/mqtt"));
        c.ca_cert_pem = Some(ca.to_vec());
        c.connect_timeout = Duration::from_secs(5);
        c
    };
    let result = std::panic::AssertUnwindSafe(async {
        crate::protocols::frost_keygen_sign_with(|| wss_config(&ca)).await;
        crate::protocols::frost_keygen_sign_with(|| {
            let mut c = MqttConfig::new(format!("ws://127.0.0.1:{ws}/mqtt"));
            c.connect_timeout = Duration::from_secs(5);
            c
        })
        .await;
        let device = devices(1, "wss-untrusted").remove(0);
        let mut untrusted = wss_config(&other_ca);
        untrusted.connect_timeout = Duration::from_secs(2);
        Link::connect(device, untrusted)
            .await
            .err()
            .map(|e| e.to_string())
    });
    let outcome = futures::FutureExt::catch_unwind(result).await;
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    let refused = match outcome {
        Ok(refused) => refused,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let err = refused.expect("a broker certificate from another CA must be refused");
    assert!(err.contains("could not connect"), "{err}");
}
