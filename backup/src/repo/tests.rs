//! Repository layout, listing, manifests and deletion on a local directory.

use super::*;
use crate::manifest::tests::sample;

fn cluster() -> ClusterId {
    ClusterId {
        namespace: "prod".into(),
        project: "shop".into(),
        name: "pg-main".into(),
    }
}

#[tokio::test]
async fn lists_reads_writes_and_deletes_backups() {
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = Repository::local("local", &dir.path().join("a/b")).expect("local repo");
    assert!(
        repo.list_backups(&cluster())
            .await
            .expect("empty list")
            .is_empty()
    );

    let newer = BackupId::parse("20261203T153000Z-0000000b").expect("id");
    let older = BackupId::parse("20261202T010203Z-ffffffff").expect("id");
    for id in [&newer, &older] {
        repo.write_manifest(&sample(id.clone()))
            .await
            .expect("write manifest");
        let chunk = repo
            .object_in_backup(&cluster(), id, "data/base/00000000.age")
            .expect("path");
        repo.store()
            .put(&chunk, PutPayload::from_static(b"x"))
            .await
            .expect("put chunk");
    }
    // Something that is not a backup is ignored.
    let stray = repo
        .backups_root(&cluster())
        .expect("root")
        .join("notes")
        .join("x");
    repo.store()
        .put(&stray, PutPayload::from_static(b"x"))
        .await
        .expect("put stray");

    assert_eq!(
        repo.list_backups(&cluster()).await.expect("list"),
        vec![older.clone(), newer.clone()]
    );
    assert_eq!(
        repo.read_manifest(&cluster(), &newer).await.expect("read"),
        sample(newer.clone())
    );
    assert!(
        dir.path()
            .join("a/b/prod/shop/pg-main/backups")
            .join(newer.as_str())
            .join("manifest.json")
            .is_file()
    );

    assert_eq!(
        repo.delete_backup(&cluster(), &older)
            .await
            .expect("delete"),
        2
    );
    assert_eq!(
        repo.list_backups(&cluster()).await.expect("list"),
        vec![newer.clone()]
    );
    assert!(matches!(
        repo.read_manifest(&cluster(), &older).await,
        Err(RepoError::Object { .. })
    ));
}

#[tokio::test]
async fn a_corrupt_manifest_is_an_error_naming_the_object() {
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = Repository::local("local", dir.path()).expect("local repo");
    let id = BackupId::parse("20261203T153000Z-0000000b").expect("id");
    let path = repo.manifest_path(&cluster(), &id).expect("path");
    repo.store()
        .put(&path, PutPayload::from_static(b"{\"format\": 1, \"backup"))
        .await
        .expect("put");
    let err = repo
        .read_manifest(&cluster(), &id)
        .await
        .expect_err("corrupt");
    assert_eq!(
        err.to_string(),
        "local:prod/shop/pg-main/backups/20261203T153000Z-0000000b/manifest.json: corrupt manifest"
    );
}

#[test]
fn layout_and_names() {
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let repo = Repository::new("m", store, "backups/v1").expect("repo");
    let id = BackupId::parse("20261203T153000Z-0000000b").expect("id");
    assert_eq!(
        repo.object_in_backup(
            &cluster(),
            &id,
            &Repository::chunk_name("base", 3).expect("name")
        )
        .expect("path")
        .to_string(),
        "backups/v1/prod/shop/pg-main/backups/20261203T153000Z-0000000b/data/base/00000003.age"
    );
    assert_eq!(
        repo.archive_root(&cluster()).expect("path").to_string(),
        "backups/v1/prod/shop/pg-main/archive"
    );
    for bad in ["", "..", ".hidden", "a/b", "a b"] {
        assert!(segment("stream name", bad).is_err(), "{bad}");
    }
    let mut evil = cluster();
    evil.name = "../x".into();
    assert!(repo.cluster_root(&evil).is_err());

    let config = S3Config {
        bucket: "b".into(),
        prefix: "p".into(),
        endpoint: Some("http://127.0.0.1:1".into()),
        region: "us-east-1".into(),
        path_style: true,
        access_key_id: "id".into(),
        secret_access_key: "s3cr3t".into(),
    };
    assert!(!format!("{config:?}").contains("s3cr3t"));
    Repository::s3("s3", &config).expect("s3 repo builds without network");
    let bad = S3Config {
        endpoint: Some("ftp://x".into()),
        ..config
    };
    assert!(Repository::s3("s3", &bad).is_err());
}
