//! The etcd transactions behind [`Store::claim_primary`](super::Store::claim_primary) and
//! [`Store::delete_if_lease`](super::Store::delete_if_lease), built apart from the client so
//! `etcd.rs` stays about the client and each transaction reads in one place.

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

use super::{Claim, LeaseId};

/// `primary` absent ∧ `history` at the expected revision (when asked) ∧ `initialized` absent
/// (when given) ⇒ put `primary` (bound to the lease), `history` and `initialized`.
pub(super) fn claim(c: Claim) -> Txn {
    let Claim {
        primary_key,
        primary_value,
        lease,
        history_key,
        expected_history_revision,
        history_value,
        initialized,
    } = c;
    let mut when = vec![Compare::create_revision(
        primary_key.as_str(),
        CompareOp::Equal,
        0,
    )];
    // etcd compares an absent key as one with all revisions 0, so `Some(0)` means "absent".
    if let Some(rev) = expected_history_revision {
        when.push(Compare::mod_revision(
            history_key.as_str(),
            CompareOp::Equal,
            rev,
        ));
    }
    let mut then = vec![
        TxnOp::put(
            primary_key,
            primary_value,
            Some(PutOptions::new().with_lease(lease.0)),
        ),
        TxnOp::put(history_key, history_value, None),
    ];
    if let Some((key, value)) = initialized {
        when.push(Compare::create_revision(key.as_str(), CompareOp::Equal, 0));
        then.push(TxnOp::put(key, value, None));
    }
    Txn::new().when(when).and_then(then)
}

/// `key` bound to `lease` ⇒ replace its value, still bound to `lease`.
pub(super) fn put_if_lease(key: &str, value: Vec<u8>, lease: LeaseId) -> Txn {
    Txn::new()
        .when([Compare::lease(key, CompareOp::Equal, lease.0)])
        .and_then([TxnOp::put(
            key,
            value,
            Some(PutOptions::new().with_lease(lease.0)),
        )])
}

/// `guard` bound to `lease` ⇒ put `key` (bound to no lease).
pub(super) fn put_if_holder(guard: &str, key: &str, value: Vec<u8>, lease: LeaseId) -> Txn {
    Txn::new()
        .when([Compare::lease(guard, CompareOp::Equal, lease.0)])
        .and_then([TxnOp::put(key, value, None)])
}

/// `key` bound to `lease` ⇒ delete it. An absent key has lease 0, which no granted lease is.
pub(super) fn delete_if_lease(key: &str, lease: LeaseId) -> Txn {
    Txn::new()
        .when([Compare::lease(key, CompareOp::Equal, lease.0)])
        .and_then([TxnOp::delete(key, None)])
}
