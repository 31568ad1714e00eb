//! What an Ethereum transaction transfers, as an approver's amount rules read it
//! (`amountOriginal`, `receivingAddress`, the asset): the value of a plain transfer, or the
//! amount and recipient of an ERC-20 `transfer(address,uint256)`. Any other call moves
//! something vsigner cannot name (an approval, a swap, a transfer from another account),
//! so its amount and recipient are *unknown*, never zero: a rule that compares numbers
//! must not pass it by reading "0".

use alloy::primitives::{Address, U256};

use crate::request::EthTransaction;

/// The selector of ERC-20 `transfer(address,uint256)`.
const ERC20_TRANSFER: [u8; 4] = [0xa9, 0x05, 0x9c, 0xbb];

/// What a transaction transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// The chain's own coin: `value` wei to `to` (no call data).
    Native {
        /// Amount in wei.
        amount: U256,
        /// Recipient; `None` for a contract creation.
        to: Option<Address>,
    },
    /// An ERC-20 `transfer(to, amount)` on `token`, with no value attached.
    Erc20 {
        /// The token contract.
        token: Address,
        /// Amount in the token's smallest unit.
        amount: U256,
        /// Recipient.
        to: Address,
    },
    /// A call whose effect vsigner does not decode.
    Unknown,
}

impl Transfer {
    /// What `tx` transfers.
    pub fn of(tx: &EthTransaction) -> Transfer {
        let t = tx.transaction();
        if t.input.is_empty() {
            return Transfer::Native {
                amount: t.value,
                to: tx.to(),
            };
        }
        match (tx.to(), t.input.as_ref()) {
            (Some(token), [s0, s1, s2, s3, args @ ..])
                if [*s0, *s1, *s2, *s3] == ERC20_TRANSFER
                    && args.len() == 64
                    && t.value.is_zero()
                    && args[..12].iter().all(|b| *b == 0) =>
            {
                Transfer::Erc20 {
                    token,
                    to: Address::from_slice(&args[12..32]),
                    amount: U256::from_be_slice(&args[32..64]),
                }
            }
            _ => Transfer::Unknown,
        }
    }

    /// The amount in the asset's smallest unit, as a decimal string; `None` when unknown.
    pub fn amount(&self) -> Option<String> {
        match self {
            Transfer::Native { amount, .. } | Transfer::Erc20 { amount, .. } => Some(amount.to_string()),
            Transfer::Unknown => None,
        }
    }

    /// The recipient (EIP-55); `None` when unknown or a contract creation.
    pub fn recipient(&self) -> Option<String> {
        match self {
            Transfer::Native { to, .. } => to.map(|a| a.to_checksum(None)),
            Transfer::Erc20 { to, .. } => Some(to.to_checksum(None)),
            Transfer::Unknown => None,
        }
    }

    /// The token contract of an ERC-20 transfer (EIP-55).
    pub fn token(&self) -> Option<String> {
        match self {
            Transfer::Erc20 { token, .. } => Some(token.to_checksum(None)),
            _ => None,
        }
    }
}
