//! The S3 test server ([`e2e::harness::s3::S3Server`], SeaweedFS `weed mini`) works with the
//! client the backup crate uses (`object_store` with `aws`): put, get, list and delete an
//! object, a multipart upload of 20 MiB, a wrong secret refused, and a kill that leaves
//! requests failing (bounded) until a restart brings the objects back.

use std::time::{Duration, Instant};

use e2e::harness::s3::S3Server;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};

/// A client for `server`'s bucket that signs with `secret`; few retries, so that a refused
/// or dead server fails the request within seconds.
fn client(server: &S3Server, secret: &str) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_region(server.region())
        .with_bucket_name(server.bucket())
        .with_access_key_id(server.access_key_id())
        .with_secret_access_key(secret)
        .with_retry(RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
            ..RetryConfig::default()
        })
        .with_client_options(
            // Set here, not with the builder's `with_allow_http`: these options replace it.
            ClientOptions::new()
                .with_allow_http(true)
                .with_timeout(Duration::from_secs(30))
                .with_connect_timeout(Duration::from_secs(2)),
        )
        .build()
        .expect("build the S3 client")
}

/// `len` bytes that do not compress or repeat (xorshift).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_list_delete_multipart_and_a_wrong_secret() {
    let started = Instant::now();
    let server = S3Server::start().expect("start SeaweedFS");
    eprintln!(
        "SeaweedFS ready in {:?} at {}",
        started.elapsed(),
        server.endpoint()
    );
    assert!(server.endpoint().starts_with("http://127.0.0.1:"));
    let store = client(&server, server.secret_access_key());

    // Put, get, head, list, delete.
    let small = Path::from("dir/small.bin");
    let body = noise(100_000, 1);
    store
        .put(&small, PutPayload::from(body.clone()))
        .await
        .expect("put");
    let got = store
        .get(&small)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("read body");
    assert_eq!(&got[..], &body[..]);
    assert_eq!(store.head(&small).await.expect("head").size, 100_000);
    let listed = store
        .list_with_delimiter(Some(&Path::from("dir")))
        .await
        .expect("list");
    let names: Vec<String> = listed
        .objects
        .iter()
        .map(|o| o.location.to_string())
        .collect();
    assert_eq!(names, vec!["dir/small.bin".to_owned()]);
    store.delete(&small).await.expect("delete");
    assert!(matches!(
        store.head(&small).await,
        Err(object_store::Error::NotFound { .. })
    ));

    // A multipart upload of 20 MiB in 5 MiB parts (S3's minimum part size).
    let big = Path::from("big/20mib.bin");
    let body = noise(20 << 20, 2);
    let t = Instant::now();
    let upload = store
        .put_multipart(&big)
        .await
        .expect("start multipart upload");
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 5 << 20);
    for chunk in body.chunks(1 << 20) {
        writer.write(chunk);
    }
    writer.finish().await.expect("complete multipart upload");
    eprintln!("20 MiB multipart upload in {:?}", t.elapsed());
    let got = store
        .get(&big)
        .await
        .expect("get big")
        .bytes()
        .await
        .expect("read big");
    assert_eq!(got.len(), body.len());
    assert!(
        got[..] == body[..],
        "the multipart object reads back as written"
    );

    // The right access key with a wrong secret: refused, and nothing written.
    let wrong = client(&server, "not-the-secret");
    let denied = Path::from("denied.bin");
    let err = wrong
        .put(&denied, PutPayload::from(vec![1u8; 10]))
        .await
        .expect_err("a wrong secret must be refused");
    eprintln!("wrong secret: {err}");
    assert!(
        matches!(err, object_store::Error::PermissionDenied { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("SignatureDoesNotMatch"),
        "refused for the signature: {err}"
    );
    assert!(
        wrong.get(&big).await.is_err(),
        "a wrong secret reads nothing"
    );
    assert!(matches!(
        store.head(&denied).await,
        Err(object_store::Error::NotFound { .. })
    ));
    eprintln!("whole test {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_fails_requests_and_a_restart_keeps_the_objects() {
    let mut server = S3Server::start().expect("start SeaweedFS");
    let store = client(&server, server.secret_access_key());
    let kept = Path::from("kept.bin");
    store
        .put(&kept, PutPayload::from(noise(1000, 3)))
        .await
        .expect("put");

    // Killed mid-upload: the part written before went in, the rest fails within seconds.
    let upload = store
        .put_multipart(&Path::from("cut.bin"))
        .await
        .expect("start multipart upload");
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 5 << 20);
    writer.write(&noise(5 << 20, 4));
    writer
        .wait_for_capacity(0)
        .await
        .expect("first part uploaded");
    server.kill();
    assert!(!server.is_running());
    writer.write(&noise(5 << 20, 5));
    let t = Instant::now();
    assert!(
        writer.finish().await.is_err(),
        "the upload fails once the server is gone"
    );
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "bounded: {:?}",
        t.elapsed()
    );

    server.restart().expect("restart SeaweedFS");
    // The bucket answers before the volume server holding the object has re-registered
    // (a GET then fails with 500 for a moment): retry, bounded.
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let res = match store.get(&kept).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        match res {
            Ok(b) => break b,
            Err(e) if Instant::now() < deadline => {
                eprintln!("get after restart, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("get after restart: {e}"),
        }
    };
    assert_eq!(&got[..], &noise(1000, 3)[..]);
    assert!(matches!(
        store.head(&Path::from("cut.bin")).await,
        Err(object_store::Error::NotFound { .. })
    ));
}

#[test]
fn drop_kills_the_process_group_and_removes_the_temp_dir() {
    let server = S3Server::start().expect("start SeaweedFS");
    let dir = server.dir().to_owned();
    let port = server.port();
    drop(server);
    assert!(!dir.exists(), "temp dir removed on drop");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing answers on the S3 port after drop"
    );
}
