//! Backup ids: `20261203T153000Z-1a2b3c4d`, the UTC start time to the second and 32 random
//! bits, so that sorting ids as strings sorts backups by time and two backups started in the
//! same second (two nodes, a retried slot) never collide.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The id of one backup, unique within a cluster; also its directory name in a repository.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupId(String);

/// A string that is not a backup id.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a backup id (expected YYYYMMDDTHHMMSSZ-xxxxxxxx, 8 lowercase hex digits)")]
pub struct InvalidBackupId(pub String);

impl BackupId {
    /// A new id for a backup starting at `at`, with fresh random bits from the OS.
    pub fn generate(at: SystemTime) -> Result<Self, getrandom::Error> {
        let mut random = [0u8; 4];
        getrandom::fill(&mut random)?;
        let id = format!("{}-{}", compact_utc(at), super::hex(&random));
        Ok(Self(id))
    }

    /// Checks the shape of `s` (as found in a listing or a manifest).
    pub fn parse(s: &str) -> Result<Self, InvalidBackupId> {
        let b = s.as_bytes();
        let ok = b.len() == 25
            && b[..8].iter().all(u8::is_ascii_digit)
            && b[8] == b'T'
            && b[9..15].iter().all(u8::is_ascii_digit)
            && b[15] == b'Z'
            && b[16] == b'-'
            && b[17..]
                .iter()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidBackupId(s.to_owned()))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for BackupId {
    type Error = InvalidBackupId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<BackupId> for String {
    fn from(id: BackupId) -> Self {
        id.0
    }
}

/// `at` in UTC to the second; times outside jiff's range (years -9999..=9999) are clamped
/// to the epoch.
fn utc(at: SystemTime) -> jiff::Timestamp {
    let t = jiff::Timestamp::try_from(at).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    jiff::Timestamp::from_second(t.as_second()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// `at` as RFC 3339 UTC to the second (`2026-12-03T15:30:00Z`), the form manifests use.
pub fn rfc3339(at: SystemTime) -> String {
    utc(at).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `at` as compact UTC to the second (`20261203T153000Z`): the time part of backup ids and
/// slot names, which sorts as text.
pub fn compact_utc(at: SystemTime) -> String {
    utc(at).strftime("%Y%m%dT%H%M%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn ids_sort_by_time_and_parse_back() {
        // 2026-12-03T15:30:00Z
        let at = UNIX_EPOCH + Duration::from_secs(1_796_311_800);
        let a = BackupId::generate(at).expect("OS RNG");
        assert!(a.as_str().starts_with("20261203T153000Z-"), "{a}");
        assert_eq!(BackupId::parse(a.as_str()).expect("own id parses"), a);
        let b = BackupId::generate(at + Duration::from_secs(1)).expect("OS RNG");
        assert!(a < b);
        assert_eq!(rfc3339(at), "2026-12-03T15:30:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        for bad in [
            "",
            "20261203T153000Z",
            "20261203T153000Z-1A2B3C4D",
            "../../etc/passwd",
        ] {
            assert!(BackupId::parse(bad).is_err(), "{bad}");
        }
    }
}
