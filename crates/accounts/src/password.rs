use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use unicode_normalization::UnicodeNormalization;

use crate::Email;

/// A plaintext password. Normalized to Unicode NFC so the same password typed on two keyboards
/// hashes the same; its `Debug` never shows the content and its memory is zeroized on drop.
pub struct Password(SecretString);

impl Password {
    /// Wraps a password as received.
    #[must_use]
    pub fn new(raw: &str) -> Self {
        Self(SecretString::from(raw.nfc().collect::<String>()))
    }

    /// The plaintext, for the hasher and the policy only.
    #[must_use]
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl Clone for Password {
    fn clone(&self) -> Self {
        Self(SecretString::from(self.expose()))
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// An Argon2id hash in PHC string form. Not the password, but still kept out of `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a PHC string.
    #[must_use]
    pub fn new(phc: String) -> Self {
        Self(phc)
    }
    /// The PHC string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

/// One rule of the password policy a password breaks (the `violations` of API.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordViolation {
    /// Fewer than 8 characters (PWD-1).
    TooShort,
    /// More than 128 characters (PWD-4).
    TooLong,
    /// No upper-case letter (PWD-1).
    MissingUppercase,
    /// No lower-case letter (PWD-1).
    MissingLowercase,
    /// No digit (PWD-1).
    MissingDigit,
    /// No character that is neither letter nor digit (PWD-1).
    MissingSpecial,
    /// Differs from its confirmation (PWD-2).
    ConfirmationMismatch,
    /// A common password, or one with only digits and symbols around a common one (PWD-4).
    TooCommon,
    /// Contains the local part of the user's email (PWD-4).
    ContainsEmail,
}

impl PasswordViolation {
    /// The stable name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TooShort => "too_short",
            Self::TooLong => "too_long",
            Self::MissingUppercase => "missing_uppercase",
            Self::MissingLowercase => "missing_lowercase",
            Self::MissingDigit => "missing_digit",
            Self::MissingSpecial => "missing_special",
            Self::ConfirmationMismatch => "confirmation_mismatch",
            Self::TooCommon => "too_common",
            Self::ContainsEmail => "contains_email",
        }
    }
}

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
});

/// The password policy (PWD-1, PWD-2, PWD-4). Pure: checking needs no I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Minimum length in characters (at least 8).
    pub min_len: usize,
    /// Maximum length in characters (bounds the hashing cost).
    pub max_len: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_len: 8,
            max_len: 128,
        }
    }
}

impl PasswordPolicy {
    /// Every rule `password` breaks, in a stable order; empty when it is acceptable.
    ///
    /// `email` enables the `contains_email` rule (local parts shorter than 3 characters are
    /// ignored: they would forbid half the alphabet).
    ///
    /// ```
    /// use accounts::{Email, Password, PasswordPolicy, PasswordViolation};
    ///
    /// let policy = PasswordPolicy::default();
    /// let email = Email::parse("ana.lopez@example.com").unwrap();
    /// let good = Password::new("Tlacuache#2026");
    /// assert!(policy.check(&good, &good, Some(&email)).is_empty());
    ///
    /// let weak = Password::new("Password123!");
    /// assert_eq!(
    ///     policy.check(&weak, &Password::new("Password123?"), Some(&email)),
    ///     [PasswordViolation::ConfirmationMismatch, PasswordViolation::TooCommon],
    /// );
    /// ```
    #[must_use]
    pub fn check(
        &self,
        password: &Password,
        confirmation: &Password,
        email: Option<&Email>,
    ) -> Vec<PasswordViolation> {
        let text = password.expose();
        let len = text.chars().count();
        let mut out = Vec::new();
        if len < self.min_len.max(8) {
            out.push(PasswordViolation::TooShort);
        }
        if len > self.max_len {
            out.push(PasswordViolation::TooLong);
        }
        if !text.chars().any(char::is_uppercase) {
            out.push(PasswordViolation::MissingUppercase);
        }
        if !text.chars().any(char::is_lowercase) {
            out.push(PasswordViolation::MissingLowercase);
        }
        if !text.chars().any(char::is_numeric) {
            out.push(PasswordViolation::MissingDigit);
        }
        if !text.chars().any(|c| !c.is_alphanumeric()) {
            out.push(PasswordViolation::MissingSpecial);
        }
        if text != confirmation.expose() {
            out.push(PasswordViolation::ConfirmationMismatch);
        }
        // Only look up bounded input: the list check lower-cases the whole string.
        if len <= self.max_len && is_common(text) {
            out.push(PasswordViolation::TooCommon);
        }
        if let Some(email) = email {
            let local = email.local_part();
            if local.chars().count() >= 3 && text.to_lowercase().contains(local) {
                out.push(PasswordViolation::ContainsEmail);
            }
        }
        out
    }
}

/// `true` when the password, lower-cased, is on the shipped list, or is a listed word with only
/// digits and symbols added before or after it (`Password123!` is `password`).
fn is_common(text: &str) -> bool {
    let lower = text.to_lowercase();
    if COMMON.contains(lower.as_str()) {
        return true;
    }
    let core = lower.trim_matches(|c: char| !c.is_alphabetic());
    core.chars().count() >= 4 && COMMON.contains(core)
}

#[cfg(test)]
mod tests {
    use super::*;
    use PasswordViolation as V;

    fn check(pw: &str, confirm: &str, email: Option<&str>) -> Vec<V> {
        let email = email.map(|e| Email::parse(e).unwrap());
        PasswordPolicy::default().check(&Password::new(pw), &Password::new(confirm), email.as_ref())
    }

    #[test]
    fn a_good_password_passes() {
        assert!(check("Tlacuache#2026", "Tlacuache#2026", Some("ana@example.com")).is_empty());
    }

    #[test]
    fn every_violated_rule_is_listed() {
        assert_eq!(
            check("abc", "abd", None),
            vec![
                V::TooShort,
                V::MissingUppercase,
                V::MissingDigit,
                V::MissingSpecial,
                V::ConfirmationMismatch
            ]
        );
        assert_eq!(
            check("", "", None),
            vec![
                V::TooShort,
                V::MissingUppercase,
                V::MissingLowercase,
                V::MissingDigit,
                V::MissingSpecial
            ]
        );
    }

    #[test]
    fn each_rule_alone() {
        let cases: [(&str, V); 6] = [
            ("Tl4cu#", V::TooShort),
            ("tlacuache#2026", V::MissingUppercase),
            ("TLACUACHE#2026", V::MissingLowercase),
            ("Tlacuache#dos", V::MissingDigit),
            ("Tlacuache2026", V::MissingSpecial),
            ("Password123!", V::TooCommon),
        ];
        for (pw, expected) in cases {
            assert_eq!(check(pw, pw, None), vec![expected], "{pw}");
        }
    }

    #[test]
    fn unicode_letters_count_as_letters() {
        // Ñ is upper case, é lower case; neither is a special character.
        assert_eq!(
            check("ÑANDÚé2026", "ÑANDÚé2026", None),
            vec![V::MissingSpecial]
        );
        assert!(check("Ñandú#2026x", "Ñandú#2026x", None).is_empty());
    }

    #[test]
    fn length_limits_are_in_characters() {
        let ok = format!("Aa1!{}", "ñ".repeat(124));
        assert_eq!(ok.chars().count(), 128);
        assert!(check(&ok, &ok, None).is_empty());
        let long = format!("{ok}x");
        assert_eq!(check(&long, &long, None), vec![V::TooLong]);
    }

    #[test]
    fn email_local_part_is_refused() {
        assert_eq!(
            check(
                "Xanalopez#2026",
                "Xanalopez#2026",
                Some("AnaLopez@example.com")
            ),
            vec![V::ContainsEmail]
        );
        // A two-letter local part is too short to be meaningful.
        assert!(check("Tlacuache#2026", "Tlacuache#2026", Some("ac@example.com")).is_empty());
    }

    #[test]
    fn common_passwords_with_decoration_are_refused() {
        for pw in ["Welcome1!", "Qwerty123$", "#Contraseña2026", "Dragon!!99"] {
            assert!(check(pw, pw, None).contains(&V::TooCommon), "{pw}");
        }
    }

    #[test]
    fn nfc_normalization_makes_composed_and_decomposed_equal() {
        let composed = Password::new("Ñandú#2026x");
        let decomposed = Password::new("N\u{303}andu\u{301}#2026x");
        assert_eq!(composed.expose(), decomposed.expose());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let pw = Password::new("Tlacuache#2026");
        assert!(!format!("{pw:?}").contains("Tlacuache"));
        let hash = PasswordHash::new("$argon2id$v=19$secretish".into());
        assert!(!format!("{hash:?}").contains("argon2id"));
    }
}
