//! A device's shares of one vault at one key generation, as one keystore record.
//!
//! A device of weight `w` holds `w` shares of a vault (consecutive share indices, see
//! [`share_indices`]) and runs one party per share it uses. Its shares of a generation are
//! written and destroyed together, as one record: one share is stored as its scheme's
//! record, unchanged (so records written before weights existed read the same); several
//! are `"VSSS" ‖ u16 count ‖ (u32 length ‖ record)…`, in share-index order.

use std::ops::Range;

use zeroize::Zeroizing;

use super::RunFailure;
use crate::coordinator_api::VaultSigner;

const MAGIC: &[u8; 4] = b"VSSS";

/// The most shares a vault has (as the coordinator allows): a device refuses a larger set,
/// whatever the coordinator says, before it takes prime sets or opens a session.
pub const MAX_SHARES: u16 = 255;

/// Encodes the share records of one device (in share-index order) as one record.
pub fn encode(parts: &[Zeroizing<Vec<u8>>]) -> Result<Zeroizing<Vec<u8>>, RunFailure> {
    match parts {
        [] => Err(RunFailure::new("no share to store")),
        [one] => Ok(one.clone()),
        many => {
            let count = u16::try_from(many.len()).map_err(|_| RunFailure::new("too many shares"))?;
            let mut out = Zeroizing::new(Vec::with_capacity(
                6 + many.iter().map(|p| p.len() + 4).sum::<usize>(),
            ));
            out.extend_from_slice(MAGIC);
            out.extend_from_slice(&count.to_be_bytes());
            for part in many {
                let len = u32::try_from(part.len()).map_err(|_| RunFailure::new("share record too large"))?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(part);
            }
            Ok(out)
        }
    }
}

/// The share records of a stored record, in share-index order (one, for a record of one
/// share).
pub fn decode(bytes: &[u8]) -> Result<Vec<&[u8]>, RunFailure> {
    let Some(mut rest) = bytes.strip_prefix(MAGIC) else {
        return Ok(vec![bytes]);
    };
    let bad = || RunFailure::new("the stored share set is malformed");
    let (count, tail) = rest.split_at_checked(2).ok_or_else(bad)?;
    rest = tail;
    let count = u16::from_be_bytes(count.try_into().map_err(|_| bad())?);
    let mut parts = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let (len, tail) = rest.split_at_checked(4).ok_or_else(bad)?;
        let len = u32::from_be_bytes(len.try_into().map_err(|_| bad())?) as usize;
        let (part, tail) = tail.split_at_checked(len).ok_or_else(bad)?;
        parts.push(part);
        rest = tail;
    }
    if !rest.is_empty() || parts.len() < 2 {
        return Err(bad());
    }
    Ok(parts)
}

/// The share indices of each signer of a set (listed by position): signer `k` holds
/// `weight` consecutive indices after those of the signers before it; with weights 1, its
/// position. The coordinator numbers shares the same way.
pub fn share_indices(signers: &[VaultSigner]) -> Result<Vec<(&str, Range<u16>)>, RunFailure> {
    let mut ordered: Vec<&VaultSigner> = signers.iter().collect();
    ordered.sort_by_key(|s| s.index);
    if ordered.iter().enumerate().any(|(k, s)| usize::from(s.index) != k) {
        return Err(RunFailure::new("the signer set's positions are not 0..n"));
    }
    let mut next = 0u16;
    let mut out = Vec::with_capacity(ordered.len());
    for s in ordered {
        let weight = u16::try_from(s.weight)
            .ok()
            .filter(|w| *w >= 1)
            .ok_or_else(|| RunFailure::new(format!("signer {} has weight {}", s.device_id, s.weight)))?;
        let end = next
            .checked_add(weight)
            .filter(|e| *e <= MAX_SHARES)
            .ok_or_else(|| RunFailure::new(format!("the signer set has more than {MAX_SHARES} shares")))?;
        out.push((s.device_id.as_str(), next..end));
        next = end;
    }
    Ok(out)
}

/// The device of each share index of a signer set, in share-index order.
pub fn share_owners(signers: &[VaultSigner]) -> Result<Vec<&str>, RunFailure> {
    Ok(share_indices(signers)?
        .into_iter()
        .flat_map(|(d, range)| range.map(move |_| d))
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn one_share_is_stored_as_is_and_several_come_back_in_order() {
        let one = vec![Zeroizing::new(b"VSKE-one".to_vec())];
        let stored = encode(&one).unwrap();
        assert_eq!(&stored[..], b"VSKE-one");
        assert_eq!(decode(&stored).unwrap(), vec![&b"VSKE-one"[..]]);
        let two = vec![
            Zeroizing::new(b"first".to_vec()),
            Zeroizing::new(b"second!".to_vec()),
        ];
        let stored = encode(&two).unwrap();
        assert_eq!(decode(&stored).unwrap(), vec![&b"first"[..], &b"second!"[..]]);
        for cut in 4..stored.len() {
            assert!(decode(&stored[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn weights_number_the_shares() {
        let s = |d: &str, weight, index| VaultSigner {
            device_id: d.into(),
            weight,
            index,
        };
        let set = [s("c", 1, 2), s("a", 2, 0), s("b", 1, 1)];
        assert_eq!(
            share_indices(&set).unwrap(),
            vec![("a", 0..2), ("b", 2..3), ("c", 3..4)]
        );
        assert_eq!(share_owners(&set).unwrap(), vec!["a", "a", "b", "c"]);
        assert!(share_indices(&[s("a", 0, 0)]).is_err());
        assert!(share_indices(&[s("a", 1, 1)]).is_err());
        assert!(
            share_indices(&[s("a", 200, 0), s("b", 56, 1)]).is_err(),
            "256 shares"
        );
        assert!(share_indices(&[s("a", 200, 0), s("b", 55, 1)]).is_ok());
    }
}
