//! A private Mosquitto for TLS and WebSocket tests, with a CA and a server certificate for
//! 127.0.0.1 made by `openssl` for the test. Also used by the daemon tests
//! (`crates/vsigner/tests/daemon`, included by path).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Whether `cmd` can be run.
pub(crate) fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

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
pub(crate) fn certificates(dir: &Path) {
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

/// A Mosquitto started with `config` (written to `dir/mosquitto.conf`), killed on drop.
pub(crate) struct Mosquitto(Child);

impl Mosquitto {
    /// Starts it and waits until each of `ports` accepts connections.
    pub(crate) fn start(dir: &Path, config: &str, ports: &[u16]) -> Mosquitto {
        std::fs::write(dir.join("mosquitto.conf"), config).unwrap();
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A loaded machine may take a while; a broker that exited could not bind a port
        // (another process took it between `free_port` and now): say so instead of letting
        // the first connection fail later.
        for port in ports {
            let start = std::time::Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "mosquitto exited ({status}) before listening on {port}: the port was probably taken"
                    );
                }
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "mosquitto did not listen on {port} within 20 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Mosquitto(child)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
