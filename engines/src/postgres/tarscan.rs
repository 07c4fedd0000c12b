//! Reading the position of a base backup out of its own tar stream, as the stream passes to
//! the backup pipeline.
//!
//! `pg_basebackup -D - -F tar` writes one tar to stdout and injects its backup manifest as
//! the last member, `backup_manifest`, whose `WAL-Ranges` name the timeline and the LSN at
//! which the copy is consistent (the end of the WAL the backup needs). That is the same
//! end point `--verbose` prints on stderr, but from the file that travels with the backup
//! (and the agent's pipe to the tool carries only stdout). [`ManifestTee`] passes every byte
//! through unchanged and keeps the end of that one member.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::oneshot;

use super::sql::parse_lsn;
use crate::role_ops::Position;

/// The tar block size.
const BLOCK: usize = 512;
/// How much of the manifest's end is kept: the WAL ranges and the checksum follow the
/// (possibly long) file list, and take a few hundred bytes.
const KEEP: usize = 64 * 1024;
/// The member that holds the manifest.
const MANIFEST: &str = "backup_manifest";

/// Where the tar parser is.
#[derive(Debug)]
enum State {
    /// Collecting a 512-byte header.
    Header,
    /// Inside a member's data: bytes left, padding after it, and whether it is the manifest.
    Data { left: u64, pad: u64, manifest: bool },
    /// Skipping the padding after a member.
    Pad(u64),
    /// The end-of-archive blocks (or something unreadable): nothing more is parsed.
    Done,
}

/// A streaming tar reader that keeps the tail of `backup_manifest`.
#[derive(Debug)]
pub struct TarScan {
    state: State,
    header: Vec<u8>,
    tail: Vec<u8>,
    seen_manifest: bool,
}

impl Default for TarScan {
    fn default() -> Self {
        Self {
            state: State::Header,
            header: Vec::with_capacity(BLOCK),
            tail: Vec::new(),
            seen_manifest: false,
        }
    }
}

impl TarScan {
    /// Feed the next bytes of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Done => return,
                State::Header => {
                    let take = (BLOCK - self.header.len()).min(bytes.len());
                    self.header.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if self.header.len() == BLOCK {
                        self.state = parse_header(&self.header);
                        if let State::Data { manifest: true, .. } = self.state {
                            self.seen_manifest = true;
                            self.tail.clear();
                        }
                        self.header.clear();
                    }
                }
                State::Data {
                    left,
                    pad,
                    manifest,
                } => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    if *manifest {
                        self.tail.extend_from_slice(&bytes[..take]);
                        if self.tail.len() > 2 * KEEP {
                            self.tail.drain(..self.tail.len() - KEEP);
                        }
                    }
                    *left -= take as u64;
                    bytes = &bytes[take..];
                    if *left == 0 {
                        self.state = State::Pad(*pad);
                    }
                }
                State::Pad(left) => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    *left -= take as u64;
                    bytes = &bytes[take..];
                    if *left == 0 {
                        self.state = State::Header;
                    }
                }
            }
        }
        // A member of length zero ends without data.
        if let State::Data { left: 0, pad, .. } = self.state {
            self.state = State::Pad(pad);
        }
        if let State::Pad(0) = self.state {
            self.state = State::Header;
        }
    }

    /// The end of the backup's WAL as its manifest states it, once the manifest passed.
    pub fn end_position(&self) -> Option<Position> {
        if !self.seen_manifest {
            return None;
        }
        wal_end(&String::from_utf8_lossy(&self.tail))
    }
}

/// The member a header starts (`Done` for the zero block that ends the archive).
fn parse_header(h: &[u8]) -> State {
    if h.iter().all(|&b| b == 0) {
        return State::Done;
    }
    let name_end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
    let name = String::from_utf8_lossy(&h[..name_end]);
    let Some(size) = tar_number(&h[124..136]) else {
        return State::Done;
    };
    // Directories, links and other members without data say so with size 0.
    let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
    let regular = matches!(h[156], b'0' | 0);
    State::Data {
        left: size,
        pad,
        manifest: regular && (name == MANIFEST || name == "./backup_manifest"),
    }
}

/// A tar number field: octal text, or base-256 (first byte 0x80) for values too large for
/// it, as PostgreSQL writes files above 8 GB.
fn tar_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut n: u64 = 0;
        for (i, &b) in field.iter().enumerate() {
            let b = if i == 0 { b & 0x7f } else { b };
            n = n.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(n);
    }
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// The furthest `End-LSN` among a manifest's `WAL-Ranges` and its timeline: a backup taken
/// across a timeline switch lists one range per timeline.
pub fn wal_end(manifest: &str) -> Option<Position> {
    let ranges = &manifest[manifest.find("\"WAL-Ranges\"")?..];
    let mut best: Option<Position> = None;
    for entry in ranges.split('{').skip(1) {
        let entry = entry.split('}').next().unwrap_or("");
        let Some(timeline) = field(entry, "Timeline").and_then(|t| t.parse::<u64>().ok()) else {
            continue;
        };
        let Some(end) = field(entry, "End-LSN").and_then(parse_lsn) else {
            continue;
        };
        if best.is_none_or(|b| end > b.offset) {
            best = Some(Position {
                epoch: timeline,
                offset: end,
            });
        }
    }
    best
}

/// The value of `"key": value` (quotes removed) in one JSON object's text.
fn field<'a>(entry: &'a str, key: &str) -> Option<&'a str> {
    let at = entry.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = entry[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim().trim_matches('"'))
}

/// Passes a tool's output through unchanged and, at its end, sends the position its
/// manifest stated (`None` when the stream held no manifest, e.g. `--no-manifest`).
pub struct ManifestTee<R> {
    inner: R,
    scan: TarScan,
    report: Option<oneshot::Sender<Option<Position>>>,
}

impl<R> ManifestTee<R> {
    /// Wrap `inner`; the position arrives on the returned receiver once `inner` ended.
    pub fn new(inner: R) -> (Self, oneshot::Receiver<Option<Position>>) {
        let (tx, rx) = oneshot::channel();
        (
            Self {
                inner,
                scan: TarScan::default(),
                report: Some(tx),
            },
            rx,
        )
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for ManifestTee<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let new = &buf.filled()[before..];
            if new.is_empty() {
                if let Some(tx) = this.report.take() {
                    let _ = tx.send(this.scan.end_position());
                }
            } else {
                this.scan.feed(new);
            }
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST_TAIL: &str = r#"{ "Path": "global/pg_control", "Size": 8192, "Last-Modified": "2026-12-03 18:37:58 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": "1b2c3d4e" }
],
"WAL-Ranges": [
{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }
],
"Manifest-Checksum": "0ee5f12dc16b58696b7f08c7f2d320a8da0c4e892930f32411560ed7e929ed15"}
"#;

    fn header(name: &str, size: u64, kind: u8) -> Vec<u8> {
        let mut h = vec![0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let size = format!("{size:011o}");
        h[124..135].copy_from_slice(size.as_bytes());
        h[156] = kind;
        h
    }

    fn member(name: &str, data: &[u8]) -> Vec<u8> {
        let mut out = header(name, data.len() as u64, b'0');
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        out
    }

    fn archive(manifest: &str) -> Vec<u8> {
        let mut tar = header("base/", 0, b'5');
        tar.extend(member("PG_VERSION", b"15\n"));
        tar.extend(member("big", &vec![7u8; 3000]));
        tar.extend(member(
            "backup_label",
            b"START WAL LOCATION: 0/1 (file x)\n",
        ));
        tar.extend(member(MANIFEST, manifest.as_bytes()));
        tar.extend(vec![0u8; 2 * BLOCK]);
        tar
    }

    #[test]
    fn the_manifest_member_gives_the_end_of_the_backups_wal_in_any_chunking() {
        let mut long = String::from("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n");
        for i in 0..3000 {
            long.push_str(&format!(
                "{{ \"Path\": \"base/1/{i}\", \"Size\": 8192, \"Checksum\": \"00\" }},\n"
            ));
        }
        long.push_str(MANIFEST_TAIL);
        let tar = archive(&long);
        for chunk in [1, 7, 511, 512, 513, 4096, tar.len()] {
            let mut scan = TarScan::default();
            for piece in tar.chunks(chunk) {
                scan.feed(piece);
            }
            let p = scan.end_position().expect("a position");
            assert_eq!(
                p.notation("postgres"),
                "0/2000100 on timeline 1",
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn without_a_manifest_there_is_no_position() {
        let mut tar = member("PG_VERSION", b"15\n");
        tar.extend(vec![0u8; 2 * BLOCK]);
        let mut scan = TarScan::default();
        scan.feed(&tar);
        assert_eq!(scan.end_position(), None);
    }

    #[test]
    fn across_a_timeline_switch_the_furthest_range_counts() {
        let m = r#""WAL-Ranges": [
{ "Timeline": 3, "Start-LSN": "0/5000000", "End-LSN": "1/5000100" },
{ "Timeline": 2, "Start-LSN": "0/4000028", "End-LSN": "0/5000000" }
],"#;
        assert_eq!(
            wal_end(m).map(|p| p.notation("postgres")).as_deref(),
            Some("1/5000100 on timeline 3")
        );
        assert_eq!(wal_end("{\"Files\": []}"), None);
        assert_eq!(wal_end("\"WAL-Ranges\": [ { \"Timeline\": x } ]"), None);
    }

    #[test]
    fn tar_numbers_are_octal_or_base_256() {
        assert_eq!(tar_number(b"00000001750\0"), Some(1000));
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[7] = 0x02; // 2 << 32
        assert_eq!(tar_number(&big), Some(2u64 << 32));
        assert_eq!(tar_number(b"zz\0"), None);
    }

    #[tokio::test]
    async fn the_tee_passes_every_byte_and_reports_at_the_end() {
        use tokio::io::AsyncReadExt as _;
        let tar = archive(MANIFEST_TAIL);
        let (mut tee, rx) = ManifestTee::new(&tar[..]);
        let mut out = Vec::new();
        tee.read_to_end(&mut out).await.expect("read");
        assert_eq!(out, tar);
        let p = rx.await.expect("reported").expect("a position");
        assert_eq!(p.notation("postgres"), "0/2000100 on timeline 1");
    }
}
