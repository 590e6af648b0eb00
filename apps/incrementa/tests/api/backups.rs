//! BAK-1, BAK-3 with the real binary: create to two destinations, list, verify, restore into an
//! empty database (the audit chains verify and the restored server serves the same users) —
//! native and portable snapshots, and portable ones across SQLite and PostgreSQL — S3 through a
//! local S3-compatible server when `TEST_S3_ENDPOINT` is set, and every kind of damage refused
//! with a clear message.

use std::path::{Path, PathBuf};
use std::process::Command;

use incrementa::startup::Application;

use crate::helpers::*;

fn backup(data_dir: &Path, db_url: &str, args: &[&str]) -> (bool, String) {
    backup_with(data_dir, db_url, args, &[])
}

fn backup_with(
    data_dir: &Path,
    db_url: &str,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_incrementa"))
        .arg("backup")
        .args(args)
        .env("INCREMENTA_DATA_DIR", data_dir)
        .env("DATABASE_URL", db_url)
        .env("INCREMENTA_LOG", "warn")
        .env_remove("INCREMENTA_MASTER_KEY")
        .env_remove("INCREMENTA_MASTER_KEY_FILE")
        .env_remove("INCREMENTA_BACKUP_DIR_2")
        .env_remove("INCREMENTA_BACKUP_REMOTE")
        .env_remove("INCREMENTA_BACKUP_FORMAT")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn only_backup(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ibk"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// A fresh data directory holding the same master key as `app`'s.
fn sibling_data_dir(app: &TestApp, root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(app.data_dir.join("master.key"), dir.join("master.key")).unwrap();
    dir
}

async fn populated(db: test_support::TestDb) -> TestApp {
    let app = spawn_on(db).await;
    let [(_, owner), _, _, _] = app.company_with_roles("bk-").await;
    app.reauth(&owner).await;
    app.upload_fixture(&owner, "csd_valid").await;
    app
}

async fn round_trip(app: &TestApp, format: &str, target_url: &str, target_dir: &Path) {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("local"), root.path().join("remote"));
    let (ok, out) = backup_with(
        &app.data_dir,
        &app.db.url,
        &[
            "create",
            "--to",
            a.to_str().unwrap(),
            "--to",
            &format!("file://{}", b.display()),
        ],
        &[("INCREMENTA_BACKUP_FORMAT", format)],
    );
    assert!(ok, "{out}");
    let expected = if format == "portable" {
        "(portable snapshot)"
    } else {
        "(native snapshot)"
    };
    assert!(out.contains(expected), "{out}");
    let file = only_backup(&a);
    only_backup(&b);
    let (ok, out) = backup(
        &app.data_dir,
        &app.db.url,
        &["verify", file.to_str().unwrap()],
    );
    assert!(ok && out.contains("OK: incrementa-"), "{out}");
    // The backup holds no readable secrets or personal data.
    let sealed = std::fs::read(&file).unwrap();
    for needle in [
        &b"bk-owner@example.com"[..],
        b"Tacos",
        b"CREATE TABLE",
        b"SQLite format",
        b"incrementa_portable",
        b"password_hash",
    ] {
        assert!(!sealed.windows(needle.len()).any(|w| w == needle));
    }

    let (ok, out) = backup(target_dir, target_url, &["restore", file.to_str().unwrap()]);
    assert!(ok && out.contains("audit chain(s) verified"), "{out}");
    // Never over a database that has data.
    let (ok, out) = backup(target_dir, target_url, &["restore", file.to_str().unwrap()]);
    assert!(!ok && out.contains("empty"), "{out}");

    // The restored database serves the same users.
    let mut settings = settings_for(&app.db, target_dir);
    settings.database_url = Some(secrecy::SecretString::from(target_url.to_owned()));
    let restored = Application::build(&settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", restored.port());
    actix_web::rt::spawn(restored.run_until_stopped());
    let res = awc::Client::default()
        .post(format!("{base}/v1/sessions"))
        .send_json(&serde_json::json!({ "email": "bk-owner@example.com", "password": PASSWORD }))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

fn sqlite_target(app: &TestApp, root: &Path) -> (String, PathBuf) {
    let target_dir = sibling_data_dir(app, root, "restored");
    let target_url = format!(
        "sqlite://{}?mode=rwc",
        target_dir.join("restored.db").display()
    );
    (target_url, target_dir)
}

#[actix_web::test]
async fn sqlite_backups_round_trip_into_an_empty_database() {
    for format in ["portable", "native"] {
        let app = populated(test_support::TestDb::sqlite()).await;
        let root = tempfile::tempdir().unwrap();
        let (target_url, target_dir) = sqlite_target(&app, root.path());
        round_trip(&app, format, &target_url, &target_dir).await;
    }
}

#[actix_web::test]
async fn postgres_backups_round_trip_into_an_empty_database() {
    for format in ["portable", "native"] {
        let Some(source) = test_support::TestDb::postgres().await else {
            eprintln!("TEST_DATABASE_URL is not set: skipping the PostgreSQL backup round trip");
            return;
        };
        let target = test_support::TestDb::postgres().await.unwrap();
        let app = populated(source).await;
        let root = tempfile::tempdir().unwrap();
        let target_dir = sibling_data_dir(&app, root.path(), "restored");
        round_trip(&app, format, &target.url, &target_dir).await;
    }
}

/// The migration path off the embedded default: a portable backup of SQLite restores into
/// PostgreSQL (and back), with the audit chains intact and the users able to log in.
#[actix_web::test]
async fn portable_backups_move_between_sqlite_and_postgres() {
    let Some(pg_target) = test_support::TestDb::postgres().await else {
        eprintln!("TEST_DATABASE_URL is not set: skipping SQLite ↔ PostgreSQL restores");
        return;
    };
    let app = populated(test_support::TestDb::sqlite()).await;
    let root = tempfile::tempdir().unwrap();
    let target_dir = sibling_data_dir(&app, root.path(), "to-postgres");
    round_trip(&app, "portable", &pg_target.url, &target_dir).await;

    let app = populated(test_support::TestDb::postgres().await.unwrap()).await;
    let root = tempfile::tempdir().unwrap();
    let (target_url, target_dir) = sqlite_target(&app, root.path());
    round_trip(&app, "portable", &target_url, &target_dir).await;

    // A native backup cannot cross over, and says what would.
    let dir = root.path().join("native");
    let (ok, out) = backup_with(
        &app.data_dir,
        &app.db.url,
        &["create", "--to", dir.to_str().unwrap()],
        &[("INCREMENTA_BACKUP_FORMAT", "native")],
    );
    assert!(ok, "{out}");
    let other = root.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(app.data_dir.join("master.key"), other.join("master.key")).unwrap();
    let (ok, out) = backup(
        &other,
        &format!("sqlite://{}?mode=rwc", other.join("x.db").display()),
        &["restore", only_backup(&dir).to_str().unwrap()],
    );
    assert!(
        !ok && out.contains("portable backups restore into either"),
        "{out}"
    );
}

#[actix_web::test]
async fn progress_is_reported_on_request() {
    let app = populated(test_support::TestDb::sqlite()).await;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("b");
    let (ok, out) = backup(
        &app.data_dir,
        &app.db.url,
        &["create", "--progress", "--to", dir.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    for step in [
        "snapshot: companies, 1 rows",
        "snapshot: users, 4 rows",
        "compressing and encrypting: 100%",
        "sealed: ",
        "written to ",
    ] {
        assert!(out.contains(step), "{step}: {out}");
    }
    let (target_url, target_dir) = sqlite_target(&app, root.path());
    let (ok, out) = backup(
        &target_dir,
        &target_url,
        &["restore", "--progress", only_backup(&dir).to_str().unwrap()],
    );
    assert!(ok, "{out}");
    for step in [
        "decrypting and checking: 100%",
        "restoring: users, 4 rows",
        "verifying the audit chains",
    ] {
        assert!(out.contains(step), "{step}: {out}");
    }
    // Without --progress and without a terminal: only the answer.
    let (ok, out) = backup(
        &app.data_dir,
        &app.db.url,
        &["create", "--to", dir.to_str().unwrap()],
    );
    assert!(ok && !out.contains("snapshot:"), "{out}");
}

/// `TEST_S3_ENDPOINT` (e.g. `http://127.0.0.1:9000`, a moto or MinIO server; `.ci/run` starts
/// one) accepts any credentials; each run uses its own bucket.
fn s3_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT", endpoint.to_owned()),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
        ("AWS_ACCESS_KEY_ID", "incrementa-test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "incrementa-test-secret".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ]
}

#[actix_web::test]
async fn backups_go_to_an_s3_compatible_bucket_and_restore_from_it() {
    let Ok(endpoint) = std::env::var("TEST_S3_ENDPOINT") else {
        eprintln!("TEST_S3_ENDPOINT is not set: skipping the S3 destination test");
        return;
    };
    let bucket = format!("incrementa-{}", uuid::Uuid::new_v4().simple());
    let res = awc::Client::default()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "create bucket: {}", res.status());
    let env = s3_env(&endpoint);
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let remote = format!("s3://{bucket}/daily/incrementa");

    let app = populated(test_support::TestDb::sqlite()).await;
    let mut with_remote = envs.clone();
    with_remote.push(("INCREMENTA_BACKUP_REMOTE", &remote));
    with_remote.push(("INCREMENTA_BACKUP_KEEP", "2"));
    for _ in 0..3 {
        let (ok, out) = backup_with(&app.data_dir, &app.db.url, &["create"], &with_remote);
        assert!(
            ok && out.contains(&format!("written: {remote}/incrementa-")),
            "{out}"
        );
    }
    // Both destinations listed, retention applied to each.
    let (ok, out) = backup_with(&app.data_dir, &app.db.url, &["list"], &with_remote);
    assert!(ok, "{out}");
    let remote_backups: Vec<&str> = out.lines().filter(|l| l.starts_with("s3://")).collect();
    assert_eq!(remote_backups.len(), 2, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains("/backups/")).count(),
        2,
        "{out}"
    );
    let newest = remote_backups[1];
    let (ok, out) = backup_with(&app.data_dir, &app.db.url, &["verify", newest], &envs);
    assert!(ok && out.contains("OK: incrementa-"), "{out}");

    let root = tempfile::tempdir().unwrap();
    let (target_url, target_dir) = sqlite_target(&app, root.path());
    let (ok, out) = backup_with(&target_dir, &target_url, &["restore", newest], &envs);
    assert!(ok && out.contains("audit chain(s) verified"), "{out}");
    // A backup that is not there.
    let missing = format!("{remote}/incrementa-19990101T000000.000Z.ibk");
    let (ok, out) = backup_with(&app.data_dir, &app.db.url, &["verify", &missing], &envs);
    assert!(!ok && out.contains("has no incrementa-19990101"), "{out}");
    let audit = app.audit_dump().await.join("\n");
    assert!(audit.contains("backup.created|success"), "{audit}");
}

#[actix_web::test]
async fn an_unreachable_bucket_fails_alone_and_is_audited() {
    let app = populated(test_support::TestDb::sqlite()).await;
    let root = tempfile::tempdir().unwrap();
    let good = root.path().join("good");
    // Nothing listens on port 9 of the loopback: the connection is refused at once.
    let env = s3_env("http://127.0.0.1:9");
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, out) = backup_with(
        &app.data_dir,
        &app.db.url,
        &[
            "create",
            "--to",
            "s3://nowhere/x",
            "--to",
            good.to_str().unwrap(),
        ],
        &envs,
    );
    assert!(
        !ok && out.contains("some destinations failed: s3://nowhere/x"),
        "{out}"
    );
    assert!(!out.contains("incrementa-test-secret"), "{out}");
    only_backup(&good);
    let audit = app.audit_dump().await.join("\n");
    assert!(audit.contains("backup.failed|failure"), "{audit}");
    assert!(!audit.contains("incrementa-test-secret"), "{audit}");
    // Credentials in the URL are refused before anything is contacted.
    let (ok, out) = backup(
        &app.data_dir,
        &app.db.url,
        &["create", "--to", "s3://AKIA:secret@bucket/x"],
    );
    assert!(
        !ok && out.contains("credentials do not belong in the destination URL"),
        "{out}"
    );
}

#[actix_web::test]
async fn damage_and_wrong_keys_fail_verification_with_clear_messages() {
    let app = populated(test_support::TestDb::sqlite()).await;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("b");
    let (ok, out) = backup(
        &app.data_dir,
        &app.db.url,
        &["create", "--to", dir.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    let file = only_backup(&dir);
    let original = std::fs::read(&file).unwrap();
    let verify = |what: &str| {
        let (ok, out) = backup(
            &app.data_dir,
            &app.db.url,
            &["verify", file.to_str().unwrap()],
        );
        assert!(!ok, "{what}: {out}");
        out
    };
    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    std::fs::write(&file, &flipped).unwrap();
    assert!(verify("flipped byte").contains("checksum mismatch"));
    std::fs::write(&file, &original[..original.len() - 100]).unwrap();
    assert!(verify("truncated").contains("checksum mismatch"));
    std::fs::write(&file, &original).unwrap();
    // Editing the manifest to match a tampered file is caught by its MAC.
    let manifest = file.with_file_name(
        file.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .replace(".ibk", ".manifest.json"),
    );
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("\"format\": 1", "\"format\": 1 ")
            .replace("\"backend\": \"sqlite\"", "\"backend\": \"postgres\""),
    )
    .unwrap();
    assert!(verify("edited manifest").contains("manifest was altered"));
    std::fs::write(&manifest, &text).unwrap();
    // Another installation's key.
    let stranger = root.path().join("stranger");
    std::fs::create_dir_all(&stranger).unwrap();
    let (ok, out) = backup(
        &stranger,
        &format!("sqlite://{}?mode=rwc", stranger.join("x.db").display()),
        &["verify", file.to_str().unwrap()],
    );
    assert!(!ok && out.contains("master key is wrong"), "{out}");
    // Intact again: verifies.
    let (ok, out) = backup(
        &app.data_dir,
        &app.db.url,
        &["verify", file.to_str().unwrap()],
    );
    assert!(ok, "{out}");
}

#[actix_web::test]
async fn one_unwritable_destination_does_not_stop_the_other_and_is_audited() {
    let app = populated(test_support::TestDb::sqlite()).await;
    let root = tempfile::tempdir().unwrap();
    let good = root.path().join("good");
    let bad = root.path().join("not-a-directory");
    std::fs::write(&bad, b"a file where a directory should be").unwrap();
    let (ok, out) = backup(
        &app.data_dir,
        &app.db.url,
        &[
            "create",
            "--to",
            bad.to_str().unwrap(),
            "--to",
            good.to_str().unwrap(),
        ],
    );
    assert!(
        !ok && out.contains("some destinations failed") && out.contains("not-a-directory"),
        "{out}"
    );
    only_backup(&good);
    let audit = app.audit_dump().await.join("\n");
    assert!(audit.contains("backup.created|success"), "{audit}");
    assert!(audit.contains("backup.failed|failure"), "{audit}");
    // Retention: keep the newest N.
    for _ in 0..3 {
        let (ok, out) = backup(
            &app.data_dir,
            &app.db.url,
            &["create", "--to", good.to_str().unwrap()],
        );
        assert!(ok, "{out}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_incrementa"))
        .args(["backup", "create", "--to", good.to_str().unwrap()])
        .env("INCREMENTA_DATA_DIR", &app.data_dir)
        .env("DATABASE_URL", &app.db.url)
        .env("INCREMENTA_BACKUP_KEEP", "2")
        .output()
        .unwrap();
    assert!(out.status.success());
    let kept = std::fs::read_dir(&good)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "ibk")
        })
        .count();
    assert_eq!(kept, 2);
}
