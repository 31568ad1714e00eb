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
        check_signer_set(&s(2), 2).unwrap(),
        2,
        "a device of weight 2 holds 2 shares"
    );
    assert_eq!(
        check_signer_set(&s(0), 1).unwrap_err().code(),
        ErrorCode::UnsupportedWeight
    );
    assert_eq!(
        check_signer_set(&s(MAX_SHARES + 1), 1).unwrap_err().code(),
        ErrorCode::UnsupportedWeight
    );
    let heavy = vec![
        Signer {
            device_id: dev(0),
            weight: 200,
        },
        Signer {
            device_id: dev(1),
            weight: 100,
        },
    ];
    assert_eq!(
        check_signer_set(&heavy, 1).unwrap_err().code(),
        ErrorCode::UnsupportedWeight,
        "300 shares in all"
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

/// Devices weighted 2, 1, 1 (shares 0-1, 2, 3), threshold 3.
fn weighted_vault() -> Vault {
    let weights = [2u32, 1, 1];
    let mut v = new_vault(
        &OrgId::from_string("org"),
        "v",
        "secp256k1",
        3,
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Signer {
                device_id: dev(i as u8),
                weight: *w,
            })
            .collect(),
        0,
    )
    .unwrap();
    v.status = VaultStatus::Active;
    v
}

fn parties(op: &Operation) -> Vec<(DeviceId, Option<u16>, Option<u16>)> {
    op.committee
        .iter()
        .map(|m| (m.device_id.clone(), m.old_index, m.new_index))
        .collect()
}

#[test]
fn a_weighted_device_signs_with_as_many_shares_as_are_needed() {
    let v = weighted_vault();
    assert_eq!(share_indices(&v.signers), vec![0..2, 2..3, 3..4]);
    // The weight-2 device and one other: 3 shares, the threshold.
    let mut op = sign_op(&v);
    op.vote(&dev(2), VoteChoice::Approve, 1).unwrap();
    assert_eq!(op.approved_weight(), 1);
    op.vote(&dev(0), VoteChoice::Approve, 2).unwrap();
    assert_eq!(op.state, OperationState::Ready);
    assert_eq!(
        parties(&op),
        vec![
            (dev(0), Some(0), None),
            (dev(0), Some(1), None),
            (dev(2), Some(3), None)
        ]
    );
    assert_eq!(op.committee_devices(), vec![dev(0), dev(2)]);
    // Two devices of weight 1 first: the weight-2 device adds only the one share still needed.
    let mut op = sign_op(&v);
    op.vote(&dev(1), VoteChoice::Approve, 1).unwrap();
    op.vote(&dev(2), VoteChoice::Approve, 2).unwrap();
    assert_eq!(op.state, OperationState::AwaitingApproval, "2 of 3");
    op.vote(&dev(0), VoteChoice::Approve, 3).unwrap();
    assert_eq!(
        parties(&op),
        vec![
            (dev(0), Some(0), None),
            (dev(1), Some(2), None),
            (dev(2), Some(3), None)
        ]
    );
    // The weight-2 device's rejection leaves 2 of the 3 needed: rejected at once.
    let mut op = sign_op(&v);
    op.vote(&dev(0), VoteChoice::Reject, 1).unwrap();
    assert_eq!(op.state, OperationState::Rejected);
}

#[test]
fn a_reshare_can_change_weights() {
    let v = weighted_vault();
    let new_signers = vec![
        Signer {
            device_id: dev(0),
            weight: 1,
        },
        Signer {
            device_id: dev(1),
            weight: 2,
        },
    ];
    let mut op = Operation::new(
        &v,
        OperationDetails::Reshare {
            old_threshold: 3,
            old_signers: v.signers.clone(),
            new_threshold: 2,
            new_signers,
            old_key_generation: 0,
            new_key_generation: None,
        },
        &ClientId::from_string("c"),
        0,
        &ExpiryPolicy::default(),
    );
    op.vote(&dev(0), VoteChoice::Approve, 1).unwrap();
    op.vote(&dev(1), VoteChoice::Approve, 2).unwrap();
    assert_eq!(op.state, OperationState::Ready);
    // Old shares 0, 1 (device 0) and 2 (device 1) deal; new shares 0 (device 0), 1 and 2
    // (device 1) receive; each device's old and new shares are paired in index order.
    assert_eq!(
        parties(&op),
        vec![
            (dev(0), Some(0), Some(0)),
            (dev(1), Some(2), Some(1)),
            (dev(1), None, Some(2)),
            (dev(0), Some(1), None),
        ]
    );
    assert_eq!(op.committee_devices(), vec![dev(0), dev(1)]);
}

#[test]
fn a_weighted_keygen_has_a_party_per_share() {
    let mut v = weighted_vault();
    v.status = VaultStatus::Pending;
    let mut op = Operation::new(
        &v,
        OperationDetails::Keygen {
            threshold: 3,
            signers: v.signers.clone(),
        },
        &ClientId::from_string("c"),
        0,
        &ExpiryPolicy::default(),
    );
    for d in 0..3 {
        op.vote(&dev(d), VoteChoice::Approve, 1).unwrap();
    }
    assert_eq!(
        parties(&op),
        vec![
            (dev(0), None, Some(0)),
            (dev(0), None, Some(1)),
            (dev(1), None, Some(2)),
            (dev(2), None, Some(3)),
        ]
    );
    // Every device submits once; the keygen completes after the third device, not the fourth party.
    for d in 0..3u8 {
        let out = op
            .submit_keygen_result(
                &dev(d),
                &format!(
                    "02{}",
                    "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
                ),
                Some(&"11".repeat(32)),
                &"22".repeat(32),
                2,
            )
            .unwrap();
        assert!(out.refusal.is_none());
    }
    assert_eq!(op.state, OperationState::Completed);
}
