//! BAK-1, BAK-3 with the real binary: create to two destinations, list, verify, restore into an
//! empty database (the audit chains verify and the restored server serves the same users), and
//! every kind of damage refused with a clear message.

use std::path::{Path, PathBuf};
use std::process::Command;

use incrementa::startup::Application;

use crate::helpers::*;

fn backup(data_dir: &Path, db_url: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_incrementa"))
        .arg("backup")
        .args(args)
        .env("INCREMENTA_DATA_DIR", data_dir)
        .env("DATABASE_URL", db_url)
        .env("INCREMENTA_LOG", "warn")
        .env_remove("INCREMENTA_MASTER_KEY")
        .env_remove("INCREMENTA_MASTER_KEY_FILE")
        .env_remove("INCREMENTA_BACKUP_DIR_2")
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

async fn round_trip(app: &TestApp, target_url: &str, target_dir: &Path) {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("local"), root.path().join("remote"));
    let (ok, out) = backup(
        &app.data_dir,
        &app.db.url,
        &[
            "create",
            "--to",
            a.to_str().unwrap(),
            "--to",
            b.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
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

#[actix_web::test]
async fn sqlite_backups_round_trip_into_an_empty_database() {
    let app = populated(test_support::TestDb::sqlite()).await;
    let root = tempfile::tempdir().unwrap();
    let target_dir = sibling_data_dir(&app, root.path(), "restored");
    let target_url = format!(
        "sqlite://{}?mode=rwc",
        target_dir.join("restored.db").display()
    );
    round_trip(&app, &target_url, &target_dir).await;
}

#[actix_web::test]
async fn postgres_backups_round_trip_into_an_empty_database() {
    let Some(source) = test_support::TestDb::postgres().await else {
        eprintln!("TEST_DATABASE_URL is not set: skipping the PostgreSQL backup round trip");
        return;
    };
    let target = test_support::TestDb::postgres().await.unwrap();
    let app = populated(source).await;
    let root = tempfile::tempdir().unwrap();
    let target_dir = sibling_data_dir(&app, root.path(), "restored");
    round_trip(&app, &target.url, &target_dir).await;
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
