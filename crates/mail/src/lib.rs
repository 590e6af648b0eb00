//! Mail adapters of the notification outbox ([`notify::Mailer`]): [`SmtpMailer`] (lettre; plain,
//! STARTTLS or implicit TLS; optional credentials) and [`DirectoryMailer`], the embedded default,
//! which writes one RFC 5322 `.eml` file per message into a directory the operator reads.
//! Both build the same message: UTF-8 plain text, the outbox id as `Message-ID`, so a message
//! delivered twice (delivery is at least once) is recognisable as one.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use notify::{Mailer, NotifyError, OutboxMessage};
use secrecy::{ExposeSecret, SecretString};

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS (a local relay or a test sink only).
    None,
    /// Plain connection upgraded with STARTTLS (port 587); refused if the server cannot.
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

impl TlsMode {
    /// Parses `none`, `starttls` or `tls`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "none" => Some(Self::None),
            "starttls" => Some(Self::StartTls),
            "tls" => Some(Self::Tls),
            _ => None,
        }
    }
}

/// SMTP settings.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// Server host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
    /// User name, when the server wants one.
    pub username: Option<String>,
    /// Password (never logged).
    pub password: Option<SecretString>,
    /// Sender address, e.g. `seguridad@example.com`.
    pub from: String,
    /// Per-connection timeout.
    pub timeout: Duration,
}

fn message(from: &Mailbox, m: &OutboxMessage) -> Result<Message, NotifyError> {
    let address =
        m.to.parse()
            .map_err(|_| NotifyError::Delivery("the recipient address is not valid".into()))?;
    Message::builder()
        .from(from.clone())
        .to(Mailbox::new(Some(m.to_name.clone()), address))
        .subject(m.subject.clone())
        .message_id(Some(format!("<{}@incrementa.outbox>", m.id)))
        .header(ContentType::TEXT_PLAIN)
        .body(m.body.clone())
        .map_err(|e| NotifyError::Delivery(format!("the message could not be built: {e}")))
}

fn sender(from: &str) -> Result<Mailbox, String> {
    from.parse::<Mailbox>()
        .map_err(|_| format!("the sender address {from:?} is not valid"))
}

/// Delivery over SMTP.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("from", &self.from.email.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer for `settings` (no connection is made yet).
    ///
    /// # Errors
    /// An invalid sender address or TLS set-up, as a message for the operator.
    pub fn new(settings: &SmtpSettings) -> Result<Self, String> {
        let builder = match settings.tls {
            TlsMode::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            }
            TlsMode::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host)
                    .map_err(|e| format!("SMTP STARTTLS set-up failed: {e}"))?
            }
            TlsMode::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host)
                .map_err(|e| format!("SMTP TLS set-up failed: {e}"))?,
        };
        let mut builder = builder.port(settings.port).timeout(Some(settings.timeout));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from: sender(&settings.from)?,
        })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, m: &OutboxMessage) -> Result<(), NotifyError> {
        let email = message(&self.from, m)?;
        self.transport
            .send(email)
            .await
            .map(|_| ())
            .map_err(|e| NotifyError::Delivery(format!("SMTP: {e}")))
    }
}

/// Delivery into a directory: one `.eml` file per message, readable by any mail client. Files
/// are written whole (temporary file, then rename) and readable by the owner only.
#[derive(Debug, Clone)]
pub struct DirectoryMailer {
    dir: PathBuf,
    from: Mailbox,
}

impl DirectoryMailer {
    /// Creates the directory (mode 0700) if needed.
    ///
    /// # Errors
    /// The directory cannot be created, or the sender address is invalid.
    pub fn new(dir: PathBuf, from: &str) -> Result<Self, String> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create the outbox directory {}: {e}", dir.display()))?;
        restrict(&dir, 0o700).map_err(|e| {
            format!(
                "cannot restrict the outbox directory {}: {e}",
                dir.display()
            )
        })?;
        Ok(Self {
            dir,
            from: sender(from)?,
        })
    }
}

#[cfg(unix)]
fn restrict(path: &std::path::Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn restrict(_path: &std::path::Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[async_trait]
impl Mailer for DirectoryMailer {
    async fn send(&self, m: &OutboxMessage) -> Result<(), NotifyError> {
        let bytes = message(&self.from, m)?.formatted();
        let name = format!("{}-{}.eml", m.created_at.format("%Y%m%dT%H%M%SZ"), m.id);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let io = |e: std::io::Error| NotifyError::Delivery(format!("outbox directory: {e}"));
        tokio::fs::write(&tmp, &bytes).await.map_err(io)?;
        restrict(&tmp, 0o600).map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)?;
        Ok(())
    }

    /// Deletes the `.eml` files of messages queued before `before`, read from the time each
    /// file's name starts with (the one [`Self::send`] gave it). Nothing else in the directory
    /// is touched: other names, sub-directories and links stay.
    async fn purge_delivered(&self, before: kernel::Timestamp) -> Result<u64, NotifyError> {
        let io = |e: std::io::Error| NotifyError::Delivery(format!("outbox directory: {e}"));
        let mut entries = tokio::fs::read_dir(&self.dir).await.map_err(io)?;
        let mut removed = 0;
        while let Some(entry) = entries.next_entry().await.map_err(io)? {
            let name = entry.file_name();
            let Some(queued) = name.to_str().and_then(queued_at) else {
                continue;
            };
            // `file_type` does not follow links: a link named like a message stays.
            if queued < before && entry.file_type().await.map_err(io)?.is_file() {
                tokio::fs::remove_file(entry.path()).await.map_err(io)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// When the message in the file `name` was queued, if `name` is one [`DirectoryMailer`] writes
/// (`20261121T120000Z-<uuid>.eml`).
fn queued_at(name: &str) -> Option<kernel::Timestamp> {
    let stem = name.strip_suffix(".eml")?;
    let (stamp, id) = stem.split_once('-')?;
    uuid::Uuid::parse_str(id).ok()?;
    let naive = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").ok()?;
    Some(naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use kernel::{CompanyId, UserId};

    fn msg() -> OutboxMessage {
        OutboxMessage {
            id: uuid::Uuid::from_u128(42),
            company_id: CompanyId::from_uuid(uuid::Uuid::from_u128(7)),
            user_id: UserId::from_uuid(uuid::Uuid::from_u128(2)),
            to: "ana@example.com".into(),
            to_name: "Ana López".into(),
            template: "mfa_enabled".into(),
            subject: "Activaste la verificación en dos pasos".into(),
            body: "Hola, Ana López:\n\nAcentos: áéíóú ñ".into(),
            cause: uuid::Uuid::from_u128(43),
            created_at: chrono::Utc
                .with_ymd_and_hms(2026, 11, 21, 12, 0, 0)
                .unwrap(),
            attempts: 0,
        }
    }

    #[tokio::test]
    async fn the_retention_purge_deletes_only_the_messages_queued_before_the_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox");
        let mailer =
            DirectoryMailer::new(outbox.clone(), "Seguridad <seguridad@example.com>").unwrap();
        let at = |day: u32| {
            chrono::Utc
                .with_ymd_and_hms(2026, 11, day, 12, 0, 0)
                .unwrap()
        };
        for (n, day) in [(1_u128, 1), (2, 2), (3, 3)] {
            let mut m = msg();
            m.id = uuid::Uuid::from_u128(n);
            m.created_at = at(day);
            mailer.send(&m).await.unwrap();
        }
        // What the operator keeps there, and a link named like a message, are never touched.
        std::fs::write(outbox.join("notes.eml"), "mine").unwrap();
        std::fs::write(outbox.join("20260101T000000Z-not-a-message-id.eml"), "mine").unwrap();
        std::fs::create_dir(
            outbox.join("20260101T000000Z-00000000-0000-0000-0000-000000000009.eml"),
        )
        .unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(
            outbox.join("notes.eml"),
            outbox.join("20260101T000000Z-00000000-0000-0000-0000-000000000008.eml"),
        )
        .unwrap();
        let names = || {
            let mut names: Vec<String> = std::fs::read_dir(&outbox)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        let before = names();

        // Queued on the 1st and the 2nd, cut at noon of the 2nd: only the 1st's goes.
        assert_eq!(mailer.purge_delivered(at(2)).await.unwrap(), 1);
        let after = names();
        assert_eq!(after.len(), before.len() - 1, "{after:?}");
        assert!(
            !after.iter().any(|n| n.starts_with("20261101T120000Z-")),
            "{after:?}"
        );
        assert!(
            after.iter().any(|n| n.starts_with("20261102T120000Z-")),
            "{after:?}"
        );
        assert_eq!(mailer.purge_delivered(at(2)).await.unwrap(), 0);
        assert_eq!(mailer.purge_delivered(at(30)).await.unwrap(), 2);
        let left = names();
        assert!(left.contains(&"notes.eml".to_owned()), "{left:?}");
        assert!(
            left.contains(&"20260101T000000Z-not-a-message-id.eml".to_owned()),
            "{left:?}"
        );
        assert_eq!(left.len(), before.len() - 3, "{left:?}");
        assert_eq!(
            std::fs::read_to_string(outbox.join("notes.eml")).unwrap(),
            "mine"
        );
    }

    #[tokio::test]
    async fn the_directory_gets_one_private_eml_file_per_message() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox");
        let mailer =
            DirectoryMailer::new(outbox.clone(), "Seguridad <seguridad@example.com>").unwrap();
        mailer.send(&msg()).await.unwrap();
        // At least once: the same message again replaces its file.
        mailer.send(&msg()).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(&outbox)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(
            text.contains("Message-ID: <00000000-0000-0000-0000-00000000002a@incrementa.outbox>"),
            "{text}"
        );
        assert!(
            text.contains("To: =?utf-8?b?QW5hIEzDs3Bleg==?= <ana@example.com>"),
            "{text}"
        );
        assert!(
            text.contains("Content-Type: text/plain; charset=utf-8"),
            "{text}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(
                std::fs::metadata(&outbox).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
    }

    #[tokio::test]
    async fn a_bad_recipient_is_a_delivery_error_and_a_bad_sender_a_set_up_error() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = DirectoryMailer::new(dir.path().to_owned(), "seguridad@example.com").unwrap();
        let mut m = msg();
        m.to = "not an address".into();
        assert!(matches!(
            mailer.send(&m).await,
            Err(NotifyError::Delivery(_))
        ));
        assert!(DirectoryMailer::new(dir.path().to_owned(), "nope").is_err());
        assert_eq!(TlsMode::parse("starttls"), Some(TlsMode::StartTls));
        assert_eq!(TlsMode::parse("ssl"), None);
    }
}
