//! Envelope decoding on arbitrary bytes: `parse` and the full `open` (participant, signature,
//! execution, recipient, decryption) must return, never panic.
//!
//! Run: `cd crates/transport/fuzz && cargo fuzz run envelope_decode` (see docs/transport.md).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vsigner_transport::envelope::{self, Expectation};
use vsigner_transport::DeviceIdentity;
use vsigner_tss::ExecutionId;

fn identity(id: &str, seed: u8) -> DeviceIdentity {
    let mut bytes = b"VSID\x01".to_vec();
    bytes.push(id.len() as u8);
    bytes.extend_from_slice(id.as_bytes());
    bytes.extend_from_slice(&[seed; 32]);
    bytes.extend_from_slice(&[seed.wrapping_add(1); 32]);
    DeviceIdentity::from_bytes(&bytes).expect("fixed identity")
}

fn devices() -> &'static [DeviceIdentity; 2] {
    static DEVICES: OnceLock<[DeviceIdentity; 2]> = OnceLock::new();
    DEVICES.get_or_init(|| [identity("fuzz-a", 1), identity("fuzz-b", 7)])
}

fuzz_target!(|data: &[u8]| {
    let [a, b] = devices();
    let participants = vec![
        (a.device_id().clone(), a.public_keys().clone()),
        (b.device_id().clone(), b.public_keys().clone()),
    ];
    let eid = ExecutionId::from_bytes([0x11; 32]);
    let expect = Expectation {
        me: a,
        execution_id: &eid,
        participants: &participants,
        max_envelope: 1 << 20,
    };
    if let Ok(parsed) = envelope::parse(data, 1 << 20) {
        let _ = parsed.header.sender.as_str();
    }
    let _ = envelope::open(data, &expect);
});
