//! Unit tests of the domain transitions.

use super::*;

fn dev(i: u8) -> DeviceId {
    DeviceId::from_string(format!("dev_{i}"))
}

fn vault(n: u8, t: u16) -> Vault {
    let mut v = new_vault(
        &OrgId::from_string("org"),
        "v",
        "secp256k1",
        i64::from(t),
        (0..n)
            .map(|i| Signer {
                device_id: dev(i),
                weight: 1,
            })
            .collect(),
        0,
    )
    .unwrap();
    v.status = VaultStatus::Active;
    v
}

fn sign_op(v: &Vault) -> Operation {
    Operation::new(
        v,
        OperationDetails::Sign {
            threshold: v.threshold,
            payload: SignPayload::Digest([1; 32]),
            derivation_path: None,
            taproot: None,
            key_generation: 0,
            presignature: None,
        },
        &ClientId::from_string("c"),
        0,
        &ExpiryPolicy::default(),
    )
}

#[test]
fn sign_committee_is_earliest_approvers() {
    let v = vault(4, 2);
    let mut op = sign_op(&v);
    op.vote(&dev(3), VoteChoice::Approve, 1).unwrap();
    op.vote(&dev(0), VoteChoice::Reject, 2).unwrap();
    assert_eq!(op.state, OperationState::AwaitingApproval);
    op.vote(&dev(1), VoteChoice::Approve, 3).unwrap();
    assert_eq!(op.state, OperationState::Ready);
    let ids: Vec<_> = op.committee.iter().map(|m| m.device_id.clone()).collect();
    assert_eq!(ids, vec![dev(1), dev(3)]); // ordered by share index
    assert_eq!(
        op.vote(&dev(2), VoteChoice::Approve, 4).unwrap_err().code(),
        ErrorCode::InvalidState
    );
    assert_eq!(
        op.vote(&dev(3), VoteChoice::Approve, 4).unwrap_err().code(),
        ErrorCode::AlreadyVoted
    );
}

#[test]
fn sign_early_rejection() {
    let v = vault(3, 2);
    let mut op = sign_op(&v);
    op.vote(&dev(0), VoteChoice::Reject, 1).unwrap();
    assert_eq!(op.state, OperationState::AwaitingApproval);
    op.vote(&dev(1), VoteChoice::Abstain, 2).unwrap();
    assert_eq!(op.state, OperationState::Rejected);
}

#[test]
fn reshare_quorum_and_roles() {
    let v = vault(3, 2);
    let new_signers: Vec<Signer> = [2u8, 3, 4]
        .iter()
        .map(|i| Signer {
            device_id: dev(*i),
            weight: 1,
        })
        .collect();
    let mut op = Operation::new(
        &v,
        OperationDetails::Reshare {
            old_threshold: 2,
            old_signers: v.signers.clone(),
            new_threshold: 2,
            new_signers,
            old_key_generation: 0,
            new_key_generation: Some(1),
        },
        &ClientId::from_string("c"),
        0,
        &ExpiryPolicy::default(),
    );
    for d in [3u8, 4, 2] {
        op.vote(&dev(d), VoteChoice::Approve, 1).unwrap();
    }
    // dev 2 approved as old (1 of 2) and new.
    assert_eq!(op.state, OperationState::AwaitingApproval);
    op.vote(&dev(0), VoteChoice::Approve, 2).unwrap();
    assert_eq!(op.state, OperationState::Ready);
    let c: Vec<_> = op
        .committee
        .iter()
        .map(|m| (m.device_id.clone(), m.old_index, m.new_index))
        .collect();
    assert_eq!(
        c,
        vec![
            (dev(2), Some(2), Some(0)),
            (dev(3), None, Some(1)),
            (dev(4), None, Some(2)),
            (dev(0), Some(0), None)
        ]
    );
}

#[test]
fn keygen_needs_everyone() {
    let mut v = vault(2, 2);
    v.status = VaultStatus::Pending;
    let mut op = Operation::new(
        &v,
        OperationDetails::Keygen {
            threshold: 2,
            signers: v.signers.clone(),
        },
        &ClientId::from_string("c"),
        0,
        &ExpiryPolicy::default(),
    );
    let out = op.vote(&dev(0), VoteChoice::Abstain, 1).unwrap();
    assert_eq!(op.state, OperationState::Rejected);
    assert_eq!(out.vault_update, Some(VaultUpdate::MarkFailed));
}

#[test]
fn weights_and_thresholds() {
    let s = |w| {
        vec![Signer {
            device_id: dev(0),
            weight: w,
        }]
    };
    assert_eq!(
        check_signer_set(&s(2), 1).unwrap_err().code(),
        ErrorCode::UnsupportedWeight
    );
    assert_eq!(
        check_signer_set(&s(1), 0).unwrap_err().code(),
        ErrorCode::InvalidThreshold
    );
    assert_eq!(
        check_signer_set(&s(1), 2).unwrap_err().code(),
        ErrorCode::InvalidThreshold
    );
    assert_eq!(
        Curve::parse("secp384r1").unwrap_err().code(),
        ErrorCode::UnknownCurve
    );
}
