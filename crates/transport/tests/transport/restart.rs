//! A broker restart during a signing run: the run completes or fails cleanly within its idle
//! timeout (never hangs), and the links recover so that the next run succeeds.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rand_core::OsRng;
use vsigner_transport::{DeviceIdentity, Link};
use vsigner_tss::ecdsa::{self, AuxInfo, CoreShare, KeyShare, Message, Secp256k1};
use vsigner_tss::ProtocolTag;

use crate::common::{self, devices, free_port, spec};

/// A private Mosquitto on its own port, killed on drop.
struct Mosquitto {
    child: Option<Child>,
    port: u16,
    dir: std::path::PathBuf,
}

impl Mosquitto {
    fn start(port: u16, dir: std::path::PathBuf) -> Option<Mosquitto> {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\nlog_dest none\n"),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut m = Mosquitto {
            child: Some(child),
            port,
            dir,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(m);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        m.kill();
        None
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        let again = Mosquitto::start(self.port, self.dir.clone()).expect("mosquitto restarts");
        self.child = again.child_take();
    }

    fn child_take(mut self) -> Option<Child> {
        self.child.take()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

fn fixture_shares() -> Vec<KeyShare<Secp256k1>> {
    (0..3)
        .map(|i| {
            let core = common::test_data().join(format!("key-shares/secp256k1-2of3/party-{i}.vsgn"));
            let core = CoreShare::from_bytes(&std::fs::read(core).unwrap()).unwrap();
            let aux = common::test_data().join(format!("aux-info/n3/party-{i}.vsgn"));
            let aux = AuxInfo::from_bytes(&std::fs::read(aux).unwrap()).unwrap();
            KeyShare::from_parts(core, aux).unwrap()
        })
        .collect()
}

async fn sign(
    links: &[Link],
    devs: &[Arc<DeviceIdentity>],
    shares: &[KeyShare<Secp256k1>],
    idle: Duration,
) -> Result<Vec<ecdsa::Signature>, vsigner_tss::Error> {
    let signers = [0u16, 1];
    let members: Vec<_> = signers.iter().map(|&i| devs[usize::from(i)].clone()).collect();
    let eid = common::eid(ProtocolTag::EcdsaSign, &members);
    let message = Message::Digest([0x42; 32]);
    join_all(signers.iter().enumerate().map(|(j, &i)| {
        let party = links[usize::from(i)]
            .open_session(spec(eid, &members, idle))
            .unwrap()
            .into_party();
        let (share, message, signers) = (&shares[usize::from(i)], &message, &signers);
        async move { ecdsa::sign(party, eid, j as u16, signers, share, message, None, &mut OsRng).await }
    }))
    .await
    .into_iter()
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_during_signing_completes_or_fails_cleanly() {
    if std::process::Command::new("mosquitto")
        .arg("-h")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: no mosquitto binary (bash .ci/run installs it)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("vsigner-mosquitto-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let mut broker = Mosquitto::start(port, dir.clone()).expect("mosquitto starts");
    let url = format!("mqtt://127.0.0.1:{port}");
    let devs = devices(2, "restart");
    let links = common::connect(&url, &devs).await;
    let shares = fixture_shares();
    let digest = [0x42; 32];
    let public_key = shares[0].core().unwrap().public_key_bytes();

    // The broker dies once the run's first message has arrived (mid-run: signing takes
    // several rounds and 1–2 s) and is back 700 ms later.
    let idle = Duration::from_secs(8);
    let delivered = links[0].stats().inbox.delivered;
    let signing = sign(&links, &devs, &shares, idle);
    let outage = async {
        while links[0].stats().inbox.delivered == delivered {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        broker.kill();
        tokio::time::sleep(Duration::from_millis(700)).await;
        broker.restart();
    };
    let (result, ()) = tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(signing, outage) })
        .await
        .expect("the run neither completed nor failed: it hung");
    match result {
        Ok(sigs) => {
            eprintln!("the run survived the broker restart");
            for sig in sigs {
                verify(&public_key, &digest, &sig);
            }
        }
        Err(e) => {
            eprintln!("the run failed cleanly: {e}");
            assert!(matches!(e, vsigner_tss::Error::Transport(_)), "{e:?}");
        }
    }

    // The links reconnected: the next run succeeds.
    common::eventually("both links reconnected", || {
        links.iter().all(|l| l.stats().connected)
    })
    .await;
    assert!(links.iter().all(|l| l.stats().reconnects >= 1));
    let sigs = sign(&links, &devs, &shares, idle)
        .await
        .expect("signing after the restart");
    for sig in sigs {
        verify(&public_key, &digest, &sig);
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(dir);
}

fn verify(public_key: &[u8], digest: &[u8; 32], sig: &ecdsa::Signature) {
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(public_key).unwrap();
    let s = k256::ecdsa::Signature::from_scalars(sig.r, sig.s).unwrap();
    vk.verify_prehash(digest, &s).unwrap();
}
