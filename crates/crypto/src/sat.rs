//! SAT certificates and keys (VAULT-3, VAULT-4, VAULT-6), as `shared/sat/FACTS.md` describes them:
//! DER or PEM X.509 certificates with the RFC in x500UniqueIdentifier (2.5.4.45) and the
//! NoCertificado as ASCII digits in the serial number; PKCS#8 `EncryptedPrivateKeyInfo` keys
//! (PBES2, PBKDF2-HMAC-SHA1, DES-EDE3-CBC).

use base64::Engine as _;
use pkcs8::der::Decode as _;
use pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncryptedPrivateKeyInfo, PrivateKeyInfo};
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;
use vault::{CertificateInfo, CertificateInspector, CredentialKind, VaultError};
use x509_parser::der_parser::asn1_rs::{Any, Tag};
use x509_parser::prelude::{FromDer as _, X509Certificate, X509Name};
use zeroize::Zeroizing;

/// Largest PBKDF2 iteration count accepted: SAT uses 2048; a crafted file must not cost minutes.
const MAX_PBKDF2_ITERATIONS: u32 = 100_000;
/// Largest RSA modulus accepted, in bits.
const MAX_RSA_BITS: usize = 8192;

const OID_CN: &str = "2.5.4.3";
const OID_NAME: &str = "2.5.4.41";
const OID_O: &str = "2.5.4.10";
const OID_OU: &str = "2.5.4.11";
const OID_EMAIL: &str = "1.2.840.113549.1.9.1";
const OID_UNIQUE_ID: &str = "2.5.4.45";
const OID_SERIAL_NUMBER: &str = "2.5.4.5";

/// The [`CertificateInspector`] for SAT credentials.
#[derive(Debug, Clone, Copy, Default)]
pub struct SatInspector;

/// A certificate as DER: DER as is, PEM, or a bare base64 body (SAT tools emit all three).
fn certificate_der(input: &[u8]) -> Result<Vec<u8>, VaultError> {
    if input.first() == Some(&0x30) {
        return Ok(input.to_vec());
    }
    let text = std::str::from_utf8(input)
        .map_err(|_| VaultError::CertificateInvalid("neither DER nor PEM"))?;
    let body: String = if text.contains("-----BEGIN") {
        let start =
            text.find("-----BEGIN CERTIFICATE-----")
                .ok_or(VaultError::CertificateInvalid(
                    "the PEM holds no CERTIFICATE",
                ))?;
        let rest = text
            .get(start + "-----BEGIN CERTIFICATE-----".len()..)
            .unwrap_or_default();
        let end = rest
            .find("-----END CERTIFICATE-----")
            .ok_or(VaultError::CertificateInvalid(
                "the PEM block is not closed",
            ))?;
        rest.get(..end)
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect()
    } else {
        text.chars().filter(|c| !c.is_whitespace()).collect()
    };
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| VaultError::CertificateInvalid("neither DER nor PEM"))
}

fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, VaultError> {
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|_| VaultError::CertificateInvalid("not an X.509 certificate"))?;
    if !rest.is_empty() {
        return Err(VaultError::CertificateInvalid(
            "trailing bytes after the certificate",
        ));
    }
    Ok(cert)
}

/// Decodes a directory string: UTF-8, Printable, IA5…, T61 as Latin-1 (SAT writes `Ñ` that way),
/// BMP as UTF-16.
fn decode_string(value: &Any<'_>) -> Option<String> {
    let data = value.data;
    match value.tag() {
        Tag::T61String => Some(data.iter().map(|b| char::from(*b)).collect()),
        Tag::BmpString => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .filter_map(|c| <[u8; 2]>::try_from(c).ok().map(u16::from_be_bytes))
                .collect();
            String::from_utf16(&units).ok()
        }
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::VisibleString
        | Tag::NumericString => std::str::from_utf8(data).ok().map(str::to_owned),
        _ => None,
    }
}

fn attribute(name: &X509Name<'_>, oid: &str) -> Option<String> {
    name.iter_attributes()
        .find(|a| a.attr_type().to_id_string() == oid)
        .and_then(|a| decode_string(a.attr_value()))
        .map(|s| s.trim().to_owned())
}

/// A CA's name as people say it: its CN, else its O, else its OU.
fn issuer_name(name: &X509Name<'_>) -> String {
    attribute(name, OID_CN)
        .or_else(|| attribute(name, OID_O))
        .or_else(|| attribute(name, OID_OU))
        .unwrap_or_else(|| "unknown issuer".to_owned())
}

/// The NoCertificado: the serial's bytes as ASCII digits (FACTS.md §3); other certificates get
/// their serial in upper-case hex.
fn certificate_number(serial: &[u8]) -> String {
    if !serial.is_empty() && serial.iter().all(u8::is_ascii_digit) {
        serial.iter().map(|b| char::from(*b)).collect()
    } else {
        hex::encode_upper(serial)
    }
}

fn classify(cert: &X509Certificate<'_>) -> CredentialKind {
    let eku = matches!(cert.extended_key_usage(), Ok(Some(_)));
    let fiel_usage = cert
        .key_usage()
        .ok()
        .flatten()
        .is_some_and(|ku| ku.value.data_encipherment() || ku.value.key_agreement());
    let email = attribute(cert.subject(), OID_EMAIL).is_some();
    if eku || fiel_usage || email {
        CredentialKind::Fiel
    } else {
        CredentialKind::Csd
    }
}

fn timestamp(t: i64) -> Result<chrono::DateTime<chrono::Utc>, VaultError> {
    chrono::DateTime::from_timestamp(t, 0)
        .ok_or(VaultError::CertificateInvalid("validity date out of range"))
}

fn inspect_der(der: &[u8]) -> Result<CertificateInfo, VaultError> {
    let cert = parse_certificate(der)?;
    rsa_public_key(&cert)?;
    let subject = cert.subject();
    let unique = attribute(subject, OID_UNIQUE_ID).ok_or(VaultError::CertificateInvalid(
        "no RFC (x500UniqueIdentifier) in the subject",
    ))?;
    let mut parts = unique.split('/').map(str::trim);
    let rfc = parts
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_uppercase();
    accounts::Rfc::parse(&rfc)
        .map_err(|_| VaultError::CertificateInvalid("the subject's RFC is malformed"))?;
    let representative_rfc = parts
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_uppercase);
    let curp = attribute(subject, OID_SERIAL_NUMBER).and_then(|s| {
        s.split('/')
            .map(str::trim)
            .rfind(|p| !p.is_empty())
            .map(str::to_owned)
    });
    let legal_name = attribute(subject, OID_CN)
        .or_else(|| attribute(subject, OID_NAME))
        .or_else(|| attribute(subject, OID_O))
        .ok_or(VaultError::CertificateInvalid("no name in the subject"))?;
    let issuer = issuer_name(cert.issuer());
    let validity = cert.validity();
    Ok(CertificateInfo {
        rfc,
        representative_rfc,
        curp,
        legal_name,
        certificate_number: certificate_number(cert.raw_serial()),
        issuer,
        valid_from: timestamp(validity.not_before.timestamp())?,
        valid_to: timestamp(validity.not_after.timestamp())?,
        kind: classify(&cert),
    })
}

fn rsa_public_key(cert: &X509Certificate<'_>) -> Result<RsaPublicKey, VaultError> {
    let key = RsaPublicKey::from_public_key_der(cert.public_key().raw)
        .map_err(|_| VaultError::CertificateInvalid("not an RSA certificate"))?;
    if key.size() * 8 > MAX_RSA_BITS {
        return Err(VaultError::CertificateInvalid("the RSA key is too large"));
    }
    Ok(key)
}

/// Decrypts a SAT key file (DER or PEM PKCS#8, encrypted or not) into an RSA private key.
fn decrypt_key(input: &[u8], password: &[u8]) -> Result<RsaPrivateKey, VaultError> {
    let der: Zeroizing<Vec<u8>> = if input.starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(input)
            .map_err(|_| VaultError::PrivateKeyInvalid("unreadable PEM"))?;
        if text.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(VaultError::PrivateKeyInvalid(
                "legacy OpenSSL encryption is not supported; convert with `openssl pkcs8 -topk8 -v2 des3`",
            ));
        }
        let (label, doc) = pkcs8::der::pem::decode_vec(input)
            .map_err(|_| VaultError::PrivateKeyInvalid("unreadable PEM"))?;
        if !matches!(label, "ENCRYPTED PRIVATE KEY" | "PRIVATE KEY") {
            return Err(VaultError::PrivateKeyInvalid(
                "the PEM holds no PKCS#8 private key",
            ));
        }
        Zeroizing::new(doc)
    } else {
        Zeroizing::new(input.to_vec())
    };
    let plain: Zeroizing<Vec<u8>> = match EncryptedPrivateKeyInfo::from_der(&der) {
        Ok(encrypted) => {
            if let Some(pbes2) = encrypted.encryption_algorithm.pbes2() {
                let iterations = match &pbes2.kdf {
                    pkcs8::pkcs5::pbes2::Kdf::Pbkdf2(p) => p.iteration_count,
                    // scrypt (and any future KDF) is not what SAT uses: refuse it.
                    _ => return Err(VaultError::PrivateKeyInvalid("unsupported key derivation")),
                };
                if iterations > MAX_PBKDF2_ITERATIONS {
                    return Err(VaultError::PrivateKeyInvalid(
                        "the key derivation is too expensive",
                    ));
                }
            }
            let doc = encrypted.decrypt(password).map_err(|e| match e {
                pkcs8::Error::EncryptedPrivateKey(pkcs8::pkcs5::Error::UnsupportedAlgorithm {
                    ..
                }) => VaultError::PrivateKeyInvalid("unsupported key encryption"),
                // Wrong passwords surface as a decryption (padding) failure.
                _ => VaultError::PrivateKeyPasswordInvalid,
            })?;
            Zeroizing::new(doc.as_bytes().to_vec())
        }
        Err(_) => {
            PrivateKeyInfo::from_der(&der)
                .map_err(|_| VaultError::PrivateKeyInvalid("not a PKCS#8 key"))?;
            der.clone()
        }
    };
    // Padding passes by chance about 1 time in 256 with a wrong password: a plaintext that is not
    // a private key is a wrong password too (FACTS.md §1).
    let info =
        PrivateKeyInfo::from_der(&plain).map_err(|_| VaultError::PrivateKeyPasswordInvalid)?;
    if info.algorithm.oid != pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1") {
        return Err(VaultError::PrivateKeyInvalid("not an RSA key"));
    }
    let key =
        RsaPrivateKey::from_pkcs8_der(&plain).map_err(|_| VaultError::PrivateKeyPasswordInvalid)?;
    if key.size() * 8 > MAX_RSA_BITS {
        return Err(VaultError::PrivateKeyInvalid("the RSA key is too large"));
    }
    Ok(key)
}

impl CertificateInspector for SatInspector {
    fn inspect(&self, certificate: &[u8]) -> Result<CertificateInfo, VaultError> {
        inspect_der(&certificate_der(certificate)?)
    }

    fn check_key(
        &self,
        certificate: &[u8],
        private_key: &[u8],
        password: &[u8],
    ) -> Result<(), VaultError> {
        let der = certificate_der(certificate)?;
        let cert = parse_certificate(&der)?;
        let public = rsa_public_key(&cert)?;
        let key = decrypt_key(private_key, password)?;
        if key.n() != public.n() || key.e() != public.e() {
            return Err(VaultError::CertificateKeyMismatch);
        }
        Ok(())
    }

    fn sign(&self, private_key: &[u8], password: &[u8], data: &[u8]) -> Result<String, VaultError> {
        let key = decrypt_key(private_key, password)?;
        let signature = SigningKey::<Sha256>::new(key).sign(data);
        Ok(base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()))
    }
}

/// Verifies a base64 SHA256withRSA (PKCS#1 v1.5) signature of `data` with a certificate's public
/// key: how a CFDI seal or a timbre is checked.
///
/// # Errors
/// `CertificateInvalid` for an unreadable certificate.
pub fn verify_signature(
    certificate: &[u8],
    data: &[u8],
    signature_base64: &str,
) -> Result<bool, VaultError> {
    use rsa::signature::Verifier as _;
    let der = certificate_der(certificate)?;
    let cert = parse_certificate(&der)?;
    let public = rsa_public_key(&cert)?;
    let compact: String = signature_base64
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(compact) else {
        return Ok(false);
    };
    let Ok(signature) = rsa::pkcs1v15::Signature::try_from(bytes.as_slice()) else {
        return Ok(false);
    };
    Ok(rsa::pkcs1v15::VerifyingKey::<Sha256>::new(public)
        .verify(data, &signature)
        .is_ok())
}

/// The issuers a deployment trusts for uploaded credentials (`INCREMENTA_VAULT_TRUSTED_ISSUERS`):
/// SAT's CA certificates for production, so that a test credential (AC UAT) or a self-made one
/// is refused before it is stored. Each is kept as its subject (raw DER) and RSA key; a
/// certificate is trusted when one with its issuer's name verifies its signature.
#[derive(Clone)]
pub struct TrustedIssuers {
    anchors: std::sync::Arc<[Anchor]>,
}

struct Anchor {
    /// The subject's common name (or its whole name), for the operator.
    name: String,
    subject: Vec<u8>,
    key: RsaPublicKey,
    /// The CA certificate's validity (Unix seconds): it vouches only for certificates issued
    /// (whose validity starts) within it.
    not_before: i64,
    not_after: i64,
}

impl std::fmt::Debug for TrustedIssuers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustedIssuers({} certificates)", self.anchors.len())
    }
}

impl TrustedIssuers {
    /// Reads the trusted certificates: a PEM bundle of one or more, or one DER certificate.
    ///
    /// # Errors
    /// `CryptoError::Trust` when the input holds no certificate, or one that is not an RSA
    /// X.509 certificate.
    pub fn from_bytes(input: &[u8]) -> Result<Self, crate::CryptoError> {
        let bad = |why: &str| crate::CryptoError::Trust(why.to_owned());
        let ders: Vec<Vec<u8>> = if input.first() == Some(&0x30) {
            vec![input.to_vec()]
        } else {
            x509_parser::pem::Pem::iter_from_buffer(input)
                .filter_map(|pem| match pem {
                    Ok(p) if p.label == "CERTIFICATE" => Some(Ok(p.contents)),
                    // A private key has no place among trusted certificates: a wrong file.
                    Ok(p) if p.label.contains("PRIVATE") => {
                        Some(Err(bad("the file holds a private key")))
                    }
                    // Other blocks (a PUBLIC KEY before each certificate, as SAT's `.cer.pem`
                    // files have) say nothing about trust.
                    Ok(_) => None,
                    Err(_) => Some(Err(bad("unreadable PEM"))),
                })
                .collect::<Result<_, _>>()?
        };
        let anchors = ders
            .iter()
            .enumerate()
            .map(|(n, der)| {
                let cert = parse_certificate(der).map_err(|_| bad("not an X.509 certificate"))?;
                // Only a CA may vouch for credentials: were a taxpayer's own certificate (CA:FALSE)
                // in the file, whoever holds its key could sign certificates the vault accepts.
                let ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
                if !ca {
                    return Err(bad(&format!(
                        "certificate {} ({}) is not a CA certificate (no basicConstraints CA:TRUE); \
                         give the certificates of the CAs that issue the credentials",
                        n + 1,
                        issuer_name(cert.subject())
                    )));
                }
                let may_sign = match cert.key_usage() {
                    Ok(Some(ku)) => ku.value.key_cert_sign(),
                    Ok(None) => true,
                    Err(_) => false,
                };
                if !may_sign {
                    return Err(bad(&format!(
                        "certificate {} ({}) may not sign certificates (keyUsage without keyCertSign)",
                        n + 1,
                        issuer_name(cert.subject())
                    )));
                }
                let key = rsa_public_key(&cert).map_err(|_| bad("not an RSA certificate"))?;
                let validity = cert.validity();
                Ok(Anchor {
                    name: issuer_name(cert.subject()),
                    subject: cert.subject().as_raw().to_vec(),
                    key,
                    not_before: validity.not_before.timestamp(),
                    not_after: validity.not_after.timestamp(),
                })
            })
            .collect::<Result<Vec<_>, crate::CryptoError>>()?;
        if anchors.is_empty() {
            return Err(bad("no certificate"));
        }
        Ok(Self {
            anchors: anchors.into(),
        })
    }

    /// How many certificates are trusted.
    #[must_use]
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Each trusted certificate's name and validity, in the file's order, for the operator
    /// (`config check`, the start-up log).
    #[must_use]
    pub fn certificates(&self) -> Vec<TrustedIssuer> {
        self.anchors
            .iter()
            .map(|a| TrustedIssuer {
                name: a.name.clone(),
                valid_from: chrono::DateTime::from_timestamp(a.not_before, 0),
                valid_to: chrono::DateTime::from_timestamp(a.not_after, 0),
            })
            .collect()
    }

    /// Never: [`Self::from_bytes`] refuses an empty bundle.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Whether a trusted issuer signed `cert` (PKCS#1 v1.5 with SHA-1, SHA-256, SHA-384 or
    /// SHA-512, as SAT's CAs have over the years) while it was valid: a certificate whose
    /// validity starts before its CA's or after it ended was not issued by that CA as it was
    /// (back-dated, or made with a retired CA's key), and is not trusted.
    fn issued(&self, cert: &X509Certificate<'_>) -> bool {
        let issuer = cert.issuer().as_raw();
        let issued_at = cert.validity().not_before.timestamp();
        let tbs: &[u8] = cert.tbs_certificate.as_ref();
        let signature: &[u8] = &cert.signature_value.data;
        fn with<D: sha2::Digest + pkcs8::AssociatedOid>(
            tbs: &[u8],
        ) -> (rsa::Pkcs1v15Sign, Vec<u8>) {
            (rsa::Pkcs1v15Sign::new::<D>(), D::digest(tbs).to_vec())
        }
        let (scheme, digest) = match cert.signature_algorithm.algorithm.to_id_string().as_str() {
            "1.2.840.113549.1.1.5" => with::<sha1::Sha1>(tbs),
            "1.2.840.113549.1.1.11" => with::<Sha256>(tbs),
            "1.2.840.113549.1.1.12" => with::<sha2::Sha384>(tbs),
            "1.2.840.113549.1.1.13" => with::<sha2::Sha512>(tbs),
            _ => return false,
        };
        self.anchors
            .iter()
            .filter(|a| a.subject == issuer)
            .filter(|a| (a.not_before..=a.not_after).contains(&issued_at))
            .any(|a| a.key.verify(scheme.clone(), &digest, signature).is_ok())
    }
}

/// One trusted CA certificate as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedIssuer {
    /// Its subject's common name.
    pub name: String,
    /// Start of its validity (`None`: out of the representable range).
    pub valid_from: Option<chrono::DateTime<chrono::Utc>>,
    /// End of its validity: it vouches for credentials issued until then, and for no later ones.
    pub valid_to: Option<chrono::DateTime<chrono::Utc>>,
}

/// The [`CertificateInspector`] that also requires a trusted issuer: [`SatInspector`]'s checks,
/// then [`VaultError::CertificateUntrusted`] for a certificate no [`TrustedIssuers`] signed.
#[derive(Debug, Clone)]
pub struct TrustingSatInspector {
    issuers: TrustedIssuers,
}

impl TrustingSatInspector {
    /// Trusts `issuers`.
    #[must_use]
    pub const fn new(issuers: TrustedIssuers) -> Self {
        Self { issuers }
    }
}

impl CertificateInspector for TrustingSatInspector {
    fn inspect(&self, certificate: &[u8]) -> Result<CertificateInfo, VaultError> {
        let der = certificate_der(certificate)?;
        let info = inspect_der(&der)?;
        if !self.issuers.issued(&parse_certificate(&der)?) {
            return Err(VaultError::CertificateUntrusted);
        }
        Ok(info)
    }

    fn check_key(
        &self,
        certificate: &[u8],
        private_key: &[u8],
        password: &[u8],
    ) -> Result<(), VaultError> {
        SatInspector.check_key(certificate, private_key, password)
    }

    fn sign(&self, private_key: &[u8], password: &[u8], data: &[u8]) -> Result<String, VaultError> {
        SatInspector.sign(private_key, password, data)
    }
}

/// Decrypts a key file, for fuzzing and benchmarks: the same path the vault uses.
///
/// # Errors
/// As [`CertificateInspector::check_key`].
pub fn fuzz_decrypt_key(input: &[u8], password: &[u8]) -> Result<(), VaultError> {
    decrypt_key(input, password).map(drop)
}

/// Parses a certificate, for fuzzing: the same path the vault uses.
///
/// # Errors
/// As [`CertificateInspector::inspect`].
pub fn fuzz_inspect(input: &[u8]) -> Result<CertificateInfo, VaultError> {
    SatInspector.inspect(input)
}
