//! Test support for `tests/crash.rs`: opens a keystore, arms a crash after one step of the
//! next local write, and writes one record. The process aborts at that step (it never
//! reaches the end); the test then checks what the directory holds.
//!
//! Usage: `vsigner-keystore-crash-helper DIR PASSPHRASE KIND STEP VALUE`
//! (KIND: `share` writes key share g1 of vault `v`, `confirm` overwrites the confirmation
//! marker; STEP: 1-4, see `WriteStep`).

use vsigner_keystore::backend::{crash_after, WriteStep};
use vsigner_keystore::sealing::Argon2Params;
use vsigner_keystore::{Keystore, Passphrase, RecordId};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, passphrase, kind, step, value] = args.as_slice() else {
        return Err("usage: DIR PASSPHRASE KIND STEP VALUE".into());
    };
    let step = match step.as_str() {
        "1" => WriteStep::TempWritten,
        "2" => WriteStep::TempSynced,
        "3" => WriteStep::Published,
        "4" => WriteStep::DirSynced,
        other => return Err(format!("unknown step {other}").into()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let light = Argon2Params {
            m_cost: 256,
            t_cost: 1,
            p_cost: 1,
        };
        let ks = Keystore::open(dir, &Passphrase::with_params(passphrase.clone(), light)).await?;
        crash_after(step);
        match kind.as_str() {
            "share" => {
                ks.put(&RecordId::key_share("dev", "v", 1)?, value.as_bytes())
                    .await?
            }
            "confirm" => {
                ks.confirm_generation("dev", "v", value.parse()?).await?;
            }
            other => return Err(format!("unknown kind {other}").into()),
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Err("the write finished without crashing".into())
}
