//! TLS to PostgreSQL when the URL does not say (its `sslmode`, or `PGSSLMODE`).
//!
//! The driver's own default, `prefer`, uses TLS when the server offers it and plain TCP when it
//! does not, so a server across the network that does not offer TLS (or someone in between who
//! strips it) gets passwords and fiscal data in the clear. Here the default depends on where
//! the server is:
//!
//! - across the network: `require`, so a connection is encrypted or refused (fail closed). To
//!   check the server's certificate as well, say `sslmode=verify-full&sslrootcert=…`.
//! - on this host (a loopback address, `localhost`, or a Unix socket): `disable`. Nothing
//!   crosses a network, and whoever could read loopback traffic could read the processes'
//!   memory too; TLS there only costs every query an encryption, a decryption and their CPU.
//!
//! Whatever the URL or `PGSSLMODE` says wins, so `sslmode=require` on loopback still encrypts.

use std::net::IpAddr;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgSslMode};

/// Whether `url` or the environment chooses a TLS mode itself.
pub(crate) fn chosen_by_url_or_env(url: &str) -> bool {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let in_url = query.split('&').any(|pair| {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        key == "sslmode" || key == "ssl-mode"
    });
    in_url || std::env::var_os("PGSSLMODE").is_some()
}

/// `true` for a server on this host: a Unix socket, `localhost` or a loopback address.
fn on_this_host(options: &PgConnectOptions) -> bool {
    if options.get_socket().is_some() {
        return true;
    }
    let host = options.get_host();
    if host.starts_with('/') || host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The TLS mode for a URL that did not choose one (see the module's documentation).
pub(crate) fn default_mode(options: &PgConnectOptions) -> PgSslMode {
    if on_this_host(options) {
        PgSslMode::Disable
    } else {
        PgSslMode::Require
    }
}

/// `options` with the default TLS mode unless `chosen` (the URL or the environment chose).
pub(crate) fn with_default(options: PgConnectOptions, chosen: bool) -> PgConnectOptions {
    if chosen {
        options
    } else {
        let mode = default_mode(&options);
        options.ssl_mode(mode)
    }
}

/// The `sslmode` to hand PostgreSQL's own tools (`pg_dump`, `psql`) for `url`, as `PGSSLMODE`,
/// so they follow the same default as the pool: `None` when the URL or the environment chose, or
/// when `url` is not a PostgreSQL URL the driver can read.
#[must_use]
pub fn default_sslmode_for_tools(url: &str) -> Option<&'static str> {
    use std::str::FromStr as _;

    if chosen_by_url_or_env(url) {
        return None;
    }
    let options = PgConnectOptions::from_str(url).ok()?;
    Some(match default_mode(&options) {
        PgSslMode::Disable => "disable",
        _ => "require",
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn mode(url: &str) -> PgSslMode {
        let options = PgConnectOptions::from_str(url).unwrap();
        with_default(options, chosen_by_url_or_env(url)).get_ssl_mode()
    }

    #[test]
    fn servers_across_the_network_require_tls_and_this_hosts_do_without() {
        if std::env::var_os("PGSSLMODE").is_some() {
            // The environment chose: nothing of the default applies (checked below).
            return;
        }
        for url in [
            "postgres://u@db.example.com/x",
            "postgres://u@10.0.0.5:5432/x",
            "postgres://u@[2001:db8::1]/x",
            "postgresql://u:p@127.0.0.1.example.com/x",
        ] {
            assert!(matches!(mode(url), PgSslMode::Require), "{url}");
            assert_eq!(default_sslmode_for_tools(url), Some("require"), "{url}");
        }
        for url in [
            "postgres://postgres@127.0.0.1:5432/test",
            "postgres://u@127.8.9.10/x",
            "postgres://u@localhost/x",
            "postgres://u@LOCALHOST:5433/x",
            "postgres://u@[::1]:5432/x",
            "postgres://u@db.example.com/x?host=/var/run/postgresql",
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/x",
        ] {
            assert!(matches!(mode(url), PgSslMode::Disable), "{url}");
            assert_eq!(default_sslmode_for_tools(url), Some("disable"), "{url}");
        }
    }

    #[test]
    fn a_mode_the_url_names_wins() {
        assert!(matches!(
            mode("postgres://u@127.0.0.1/x?sslmode=require"),
            PgSslMode::Require
        ));
        assert!(matches!(
            mode("postgres://u@db.example.com/x?application_name=a&sslmode=disable"),
            PgSslMode::Disable
        ));
        assert!(matches!(
            mode("postgres://u@db.example.com/x?ssl-mode=verify-full"),
            PgSslMode::VerifyFull
        ));
        assert!(chosen_by_url_or_env("postgres://u@h/x?sslmode=prefer"));
        assert_eq!(
            default_sslmode_for_tools("postgres://u@h/x?sslmode=prefer"),
            None
        );
        if std::env::var_os("PGSSLMODE").is_none() {
            assert!(!chosen_by_url_or_env("postgres://u@h/x?sslmodes=1"));
            assert!(!chosen_by_url_or_env("postgres://u@h/x"));
        }
    }
}
