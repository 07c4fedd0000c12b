//! Round trips through local-directory repositories in temporary directories.

use super::*;
use crate::repo::{BackupId, ClusterId, Repository, StreamLocation};

const CHUNK: u64 = 16 * 1024;

fn location() -> StreamLocation {
    StreamLocation {
        cluster: ClusterId {
            namespace: "ns".into(),
            project: "p".into(),
            name: "c1".into(),
        },
        backup_id: BackupId::parse("20261203T153000Z-0123abcd").expect("valid id"),
        stream: "base".into(),
    }
}

fn random(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    getrandom::fill(&mut data).expect("OS RNG");
    data
}

fn options() -> StoreOptions {
    // Small chunks and parts, so a few hundred KiB cross every boundary (put and multipart).
    StoreOptions {
        zstd_level: 3,
        zstd_threads: 0,
        chunk_size: CHUNK,
        part_size: 5 * 1024,
    }
}

struct Fixture {
    _dirs: Vec<tempfile::TempDir>,
    repos: Vec<Repository>,
    identity: Identity,
}

fn fixture(count: usize) -> Fixture {
    let dirs: Vec<_> = (0..count)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let repos = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Repository::local(format!("r{i}"), &d.path().join("repo")).expect("local repo")
        })
        .collect();
    Fixture {
        _dirs: dirs,
        repos,
        identity: Identity::generate(),
    }
}

async fn store_random(f: &Fixture, len: usize) -> (Vec<u8>, StreamSummary) {
    let data = random(len);
    let summary = store(
        &data[..],
        &f.repos,
        &location(),
        &[f.identity.to_public()],
        &options(),
    )
    .await
    .expect("store");
    (data, summary)
}

async fn fetch_all(
    f: &Fixture,
    repo: usize,
    summary: &StreamSummary,
) -> Result<Vec<u8>, PipelineError> {
    let mut out = vec![];
    fetch(
        &f.repos[repo],
        &location(),
        summary,
        std::slice::from_ref(&f.identity),
        &mut out,
    )
    .await?;
    Ok(out)
}

fn chunk_file(
    f: &Fixture,
    repo: usize,
    summary: &StreamSummary,
    index: usize,
) -> std::path::PathBuf {
    let loc = location();
    f._dirs[repo]
        .path()
        .join("repo/ns/p/c1/backups")
        .join(loc.backup_id.as_str())
        .join(&summary.chunks[index].name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_over_several_chunks_through_two_repositories() {
    let f = fixture(2);
    // Random data does not compress: 3.5 chunks of plain data make 4 stored chunks.
    let (data, summary) = store_random(&f, (CHUNK * 7 / 2) as usize).await;
    assert_eq!(summary.plain_bytes, data.len() as u64);
    assert_eq!(summary.chunks.len(), 4, "{summary:?}");
    assert_eq!(summary.chunks[3].name, "data/base/00000003.age");
    assert!(summary.chunks[..3].iter().all(|c| c.size == CHUNK));
    assert_eq!(
        summary.stored_bytes,
        summary.chunks.iter().map(|c| c.size).sum::<u64>()
    );
    for repo in 0..2 {
        assert_eq!(fetch_all(&f, repo, &summary).await.expect("fetch"), data);
    }
    // An empty stream is a valid stream too.
    let empty = store(
        &[][..],
        &f.repos,
        &location(),
        &[f.identity.to_public()],
        &options(),
    )
    .await
    .expect("store empty");
    assert_eq!(empty.plain_bytes, 0);
    assert!(
        fetch_all(&f, 0, &empty)
            .await
            .expect("fetch empty")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compresses_with_zstd_threads() {
    let f = fixture(1);
    let data = b"the same line again and again\n".repeat(20_000);
    let opts = StoreOptions {
        zstd_threads: 2,
        ..options()
    };
    let summary = store(
        &data[..],
        &f.repos,
        &location(),
        &[f.identity.to_public()],
        &opts,
    )
    .await
    .expect("store");
    assert!(summary.stored_bytes < data.len() as u64 / 10, "{summary:?}");
    assert_eq!(fetch_all(&f, 0, &summary).await.expect("fetch"), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_is_refused_naming_the_chunk() {
    let f = fixture(1);
    let (_, summary) = store_random(&f, (CHUNK * 3) as usize).await;
    let file = chunk_file(&f, 0, &summary, 2);
    let mut bytes = std::fs::read(&file).expect("chunk file");
    bytes[100] ^= 0x01;
    std::fs::write(&file, bytes).expect("rewrite chunk");
    let err = fetch_all(&f, 0, &summary).await.expect_err("corrupt chunk");
    let text = err.to_string();
    assert!(matches!(err, PipelineError::Checksum { .. }), "{err:?}");
    assert!(
        text.starts_with(
            "r0:ns/p/c1/backups/20261203T153000Z-0123abcd/data/base/00000002.age: SHA-256 "
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} expected, found ", summary.chunks[2].sha256)),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_identity_is_a_clear_error() {
    let f = fixture(1);
    let (_, summary) = store_random(&f, 1000).await;
    let mut out = vec![];
    let err = fetch(
        &f.repos[0],
        &location(),
        &summary,
        &[Identity::generate()],
        &mut out,
    )
    .await
    .expect_err("wrong key");
    assert_eq!(
        err.to_string(),
        "wrong key: none of the given identities opens r0:ns/p/c1/backups/20261203T153000Z-0123abcd/data/base/00000000.age"
    );
    assert!(out.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_truncated_chunks_are_errors() {
    let f = fixture(1);
    let (_, summary) = store_random(&f, (CHUNK * 3) as usize).await;

    let mut short = summary.clone();
    short.chunks.pop();
    let err = fetch_all(&f, 0, &short)
        .await
        .expect_err("chunk list truncated");
    assert!(matches!(err, PipelineError::Truncated(_)), "{err:?}");
    assert!(err.to_string().starts_with("truncated: "), "{err}");

    let mut none = summary.clone();
    none.chunks.clear();
    assert!(matches!(
        fetch_all(&f, 0, &none).await,
        Err(PipelineError::Truncated(_))
    ));

    let file = chunk_file(&f, 0, &summary, 1);
    let bytes = std::fs::read(&file).expect("chunk file");
    std::fs::write(&file, &bytes[..bytes.len() - 1]).expect("truncate chunk");
    let err = fetch_all(&f, 0, &summary).await.expect_err("short chunk");
    assert!(
        err.to_string().ends_with(&format!(
            "00000001.age: {CHUNK} bytes expected, found {}",
            CHUNK - 1
        )),
        "{err}"
    );

    std::fs::remove_file(&file).expect("remove chunk");
    let err = fetch_all(&f, 0, &summary).await.expect_err("missing chunk");
    assert!(matches!(err, PipelineError::Missing { .. }), "{err:?}");
    assert!(err.to_string().ends_with("00000001.age: missing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_plain_checksum_is_an_error() {
    let f = fixture(1);
    let (_, mut summary) = store_random(&f, 5000).await;
    summary.plain_sha256 = "00".repeat(32);
    let err = fetch_all(&f, 0, &summary).await.expect_err("plain hash");
    assert!(
        matches!(
            err,
            PipelineError::PlainMismatch {
                what: "SHA-256",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_reader_fails_the_store_and_finishes_no_stream() {
    struct Failing(usize);
    impl tokio::io::AsyncRead for Failing {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(Err(std::io::Error::other("tool died")));
            }
            let n = self.0.min(buf.remaining());
            buf.put_slice(&random(n));
            self.0 -= n;
            std::task::Poll::Ready(Ok(()))
        }
    }
    let f = fixture(1);
    let err = store(
        Failing(50_000),
        &f.repos,
        &location(),
        &[f.identity.to_public()],
        &options(),
    )
    .await
    .expect_err("reader fails");
    assert!(matches!(err, PipelineError::Read(_)), "{err:?}");
}

#[test]
fn keys_parse_and_bad_ones_are_named() {
    let identity = Identity::generate();
    let public = identity.to_public().to_string();
    assert_eq!(
        parse_recipients(&[public.as_str()])
            .expect("recipient")
            .len(),
        1
    );
    let err = parse_recipients(&["age1nope"]).expect_err("bad recipient");
    assert!(
        err.to_string()
            .starts_with("`age1nope` is not an age X25519 recipient"),
        "{err}"
    );
    use age::secrecy::ExposeSecret;
    let secret = identity.to_string();
    let lines = ["# created: today", "", secret.expose_secret()];
    assert_eq!(parse_identities(&lines).map(|ids| ids.len()).ok(), Some(1));
    let Err(err) = parse_identities(&["AGE-SECRET-KEY-1BAD"]) else {
        panic!("a bad identity parsed");
    };
    assert!(!err.to_string().contains("BAD"), "never echo a key: {err}");
}
