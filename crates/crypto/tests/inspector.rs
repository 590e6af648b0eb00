//! The SAT inspector on the project's own SAT-like fixtures (scripts/gen-sat-like-fixtures.sh).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::TimeZone;
use crypto::{SatInspector, verify_signature};
use vault::{CertificateInspector, CredentialKind, VaultError};

fn read(name: &str, file: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn pair(name: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    (
        read(name, "certificate.cer"),
        read(name, "private_key.key"),
        read(name, "password.txt"),
    )
}

#[test]
fn csd_metadata() {
    let info = SatInspector
        .inspect(&read("csd_valid", "certificate.cer"))
        .unwrap();
    assert_eq!(info.rfc, "TCM970625MB1");
    assert_eq!(info.representative_rfc.as_deref(), Some("LOLA800101AB2"));
    assert_eq!(info.curp.as_deref(), Some("LOLA800101HDFPPN09"));
    assert_eq!(info.legal_name, "TACOS CAMPESTRE MX SA DE CV");
    assert_eq!(info.certificate_number, "30001000000500009901");
    assert_eq!(info.issuer, "AC de Pruebas IncrementaCRM");
    assert_eq!(info.kind, CredentialKind::Csd);
    assert_eq!(
        info.valid_from,
        chrono::Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
    );
    assert_eq!(
        info.valid_to,
        chrono::Utc.with_ymd_and_hms(2029, 1, 1, 0, 0, 0).unwrap()
    );
    // The same certificate as PEM gives the same facts.
    assert_eq!(
        SatInspector
            .inspect(&read("csd_valid", "certificate.pem"))
            .unwrap(),
        info
    );
}

#[test]
fn fiel_and_natural_person() {
    let fiel = SatInspector
        .inspect(&read("fiel_valid", "certificate.cer"))
        .unwrap();
    assert_eq!(fiel.kind, CredentialKind::Fiel);
    assert_eq!(fiel.certificate_number, "30001000000500009902");
    let person = SatInspector
        .inspect(&read("csd_person", "certificate.cer"))
        .unwrap();
    assert_eq!(person.rfc, "NULM850315QX7");
    assert_eq!(person.representative_rfc, None);
    assert_eq!(person.curp.as_deref(), Some("NULM850315MDFXPR02"));
    assert_eq!(person.kind, CredentialKind::Csd);
}

#[test]
fn matching_key_wrong_password_and_mismatch() {
    for name in ["csd_valid", "fiel_valid", "csd_expired", "csd_person"] {
        let (cer, key, pw) = pair(name);
        SatInspector
            .check_key(&cer, &key, &pw)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            matches!(
                SatInspector.check_key(&cer, &key, b"12345678b"),
                Err(VaultError::PrivateKeyPasswordInvalid)
            ),
            "{name}"
        );
        assert!(
            matches!(
                SatInspector.check_key(&cer, &key, b""),
                Err(VaultError::PrivateKeyPasswordInvalid)
            ),
            "{name}"
        );
    }
    let (cer, key, pw) = pair("mismatch");
    assert!(matches!(
        SatInspector.check_key(&cer, &key, &pw),
        Err(VaultError::CertificateKeyMismatch)
    ));
}

/// A wrong password can pass the 3DES padding check by chance (1 in 256); the key must then be
/// refused as a wrong password, never accepted and never a panic.
#[test]
fn hundreds_of_wrong_passwords_are_all_refused_as_wrong_passwords() {
    let (cer, key, _) = pair("csd_valid");
    for n in 0..300 {
        let pw = format!("wrong-{n}");
        match SatInspector.check_key(&cer, &key, pw.as_bytes()) {
            Err(VaultError::PrivateKeyPasswordInvalid) => {}
            other => panic!("password {pw}: {other:?}"),
        }
    }
}

#[test]
fn garbage_is_refused_with_the_right_code() {
    let (cer, key, pw) = pair("csd_valid");
    for junk in [
        &b""[..],
        b"hello",
        b"\x30\x03\x02\x01\x00",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ] {
        assert!(
            matches!(
                SatInspector.inspect(junk),
                Err(VaultError::CertificateInvalid(_))
            ),
            "{junk:?}"
        );
    }
    // A key file given as the certificate, and the certificate given as the key.
    assert!(matches!(
        SatInspector.inspect(&key),
        Err(VaultError::CertificateInvalid(_))
    ));
    assert!(matches!(
        SatInspector.check_key(&cer, &cer, &pw),
        Err(VaultError::PrivateKeyInvalid(_))
    ));
    let mut truncated = key.clone();
    truncated.truncate(key.len() / 2);
    assert!(matches!(
        SatInspector.check_key(&cer, &truncated, &pw),
        Err(VaultError::PrivateKeyInvalid(_))
    ));
}

#[test]
fn signatures_verify_with_the_certificate_and_are_deterministic() {
    let (cer, key, pw) = pair("csd_valid");
    let data = "||4.0|A|1|2026-11-21T12:00:00|01|30001000000500009901|Ñandú ⏻||".as_bytes();
    let sig = SatInspector.sign(&key, &pw, data).unwrap();
    assert_eq!(
        sig,
        SatInspector.sign(&key, &pw, data).unwrap(),
        "PKCS#1 v1.5 is deterministic"
    );
    assert!(verify_signature(&cer, data, &sig).unwrap());
    assert!(!verify_signature(&cer, b"other data", &sig).unwrap());
    let (other_cer, _, _) = pair("fiel_valid");
    assert!(!verify_signature(&other_cer, data, &sig).unwrap());
    assert!(matches!(
        SatInspector.sign(&key, b"wrong", data),
        Err(VaultError::PrivateKeyPasswordInvalid)
    ));
}

/// A DER certificate as a PEM block.
fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// With trusted issuers configured, a certificate their CA signed passes; one whose issuer is
/// not among them, or whose signature does not verify, is `CertificateUntrusted`; a bundle
/// (PEM, several certificates) works like one DER certificate; an unusable bundle is refused.
#[test]
fn only_certificates_a_trusted_issuer_signed_pass() {
    use crypto::{TrustedIssuers, TrustingSatInspector};
    let ca = std::fs::read(format!(
        "{}/tests/fixtures/ca.cer",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let fixture_file = |name: &str| {
        std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let other = fixture_file("other_ca.cer");
    let valid = read("csd_valid", "certificate.cer");
    let fiel = read("fiel_valid", "certificate.cer");

    let by_der = TrustingSatInspector::new(TrustedIssuers::from_bytes(&ca).unwrap());
    assert_eq!(by_der.inspect(&valid).unwrap().rfc, "TCM970625MB1");
    assert_eq!(by_der.inspect(&fiel).unwrap().kind, CredentialKind::Fiel);
    let bundle = format!("{}{}", pem(&other), pem(&ca));
    let issuers = TrustedIssuers::from_bytes(bundle.as_bytes()).unwrap();
    assert_eq!(issuers.len(), 2);
    TrustingSatInspector::new(issuers).inspect(&valid).unwrap();
    // A PUBLIC KEY block before a certificate (as SAT's `.cer.pem` files have) is skipped.
    let with_key = format!(
        "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n{}",
        pem(&ca)
    );
    assert_eq!(
        TrustedIssuers::from_bytes(with_key.as_bytes())
            .unwrap()
            .len(),
        1
    );

    // Another CA only: the issuer is not trusted.
    let elsewhere = TrustingSatInspector::new(TrustedIssuers::from_bytes(&other).unwrap());
    assert!(matches!(
        elsewhere.inspect(&valid),
        Err(VaultError::CertificateUntrusted)
    ));
    // The right issuer's name, a signature it did not make (the last byte flipped).
    let mut forged = valid.clone();
    *forged.last_mut().unwrap() ^= 0x01;
    assert!(
        SatInspector.inspect(&forged).is_ok(),
        "still a well-formed certificate"
    );
    assert!(matches!(
        by_der.inspect(&forged),
        Err(VaultError::CertificateUntrusted)
    ));
    // Malformed input is still `CertificateInvalid`, checked first.
    assert!(matches!(
        by_der.inspect(b"not a certificate"),
        Err(VaultError::CertificateInvalid(_))
    ));
    // The key checks and signing are SatInspector's.
    let (cer, key, pw) = pair("csd_valid");
    by_der.check_key(&cer, &key, &pw).unwrap();
    assert_eq!(
        by_der.sign(&key, &pw, b"||x||").unwrap(),
        SatInspector.sign(&key, &pw, b"||x||").unwrap()
    );

    // Only CAs that may sign certificates vouch: a taxpayer's certificate (CA:FALSE), whose key
    // its holder has, or a CA certificate whose keyUsage lacks keyCertSign, is refused with the
    // file's position and name, alone or in a bundle.
    for (file, why) in [
        (
            read("csd_person", "certificate.cer"),
            "is not a CA certificate",
        ),
        (
            fixture_file("ca_without_cert_sign.cer"),
            "may not sign certificates",
        ),
    ] {
        let err = TrustedIssuers::from_bytes(&file).unwrap_err().to_string();
        assert!(
            err.contains(why) && err.contains("certificate 1 ("),
            "{err}"
        );
        let bundle = format!("{}{}", pem(&ca), pem(&file));
        let err = TrustedIssuers::from_bytes(bundle.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(why) && err.contains("certificate 2 ("),
            "{err}"
        );
    }
    assert!(
        TrustedIssuers::from_bytes(&read("csd_person", "certificate.cer"))
            .unwrap_err()
            .to_string()
            .contains("MARIA NUNEZ LOPEZ")
    );

    for bad in [
        &b""[..],
        b"garbage",
        b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        b"-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n",
        &valid[..10],
    ] {
        assert!(TrustedIssuers::from_bytes(bad).is_err(), "{bad:?}");
    }
}

/// A CA vouches only for certificates issued while it was valid: `late_ca.cer` has the fixtures'
/// CA name and key but is valid from 2026, so of the fixtures it trusts only `csd_future`
/// (issued in 2030); the others, issued before it existed, are `CertificateUntrusted` under it
/// and trusted under `ca.cer` (valid 2015–2045). In a bundle with both, each one's own window
/// decides.
#[test]
fn a_ca_vouches_only_for_what_it_issued_while_valid() {
    use crypto::{TrustedIssuers, TrustingSatInspector};
    let fixture = |name: &str| {
        std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let late =
        TrustingSatInspector::new(TrustedIssuers::from_bytes(&fixture("late_ca.cer")).unwrap());
    let whole = TrustingSatInspector::new(TrustedIssuers::from_bytes(&fixture("ca.cer")).unwrap());
    assert_eq!(
        late.inspect(&read("csd_future", "certificate.cer"))
            .unwrap()
            .certificate_number,
        "30001000000500009905"
    );
    for name in ["csd_valid", "fiel_valid", "csd_expired", "csd_person"] {
        let cer = read(name, "certificate.cer");
        assert!(
            matches!(late.inspect(&cer), Err(VaultError::CertificateUntrusted)),
            "{name}"
        );
        whole.inspect(&cer).unwrap();
    }
    // Both certificates of the CA in one bundle: the key and name match both, and the one whose
    // window holds the credential's issuance vouches for it.
    let bundle = format!(
        "{}{}",
        pem(&fixture("late_ca.cer")),
        pem(&fixture("ca.cer"))
    );
    let both = TrustingSatInspector::new(TrustedIssuers::from_bytes(bundle.as_bytes()).unwrap());
    both.inspect(&read("csd_valid", "certificate.cer")).unwrap();
    both.inspect(&read("csd_future", "certificate.cer"))
        .unwrap();
}
