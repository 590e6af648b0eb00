//! Property tests of the password policy (issue 10: bad input at scale; PWD-1, PWD-2, PWD-4).
//! Any string, of any length and script, gets an answer and never a panic, and the answer obeys
//! the policy's rules exactly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use accounts::{Email, Password, PasswordPolicy, PasswordViolation as V};
use proptest::prelude::*;
use unicode_normalization::UnicodeNormalization as _;

fn check(pw: &str, confirmation: &str, email: Option<&Email>) -> Vec<V> {
    PasswordPolicy::default().check(&Password::new(pw), &Password::new(confirmation), email)
}

/// Strings that reach every rule: any Unicode, long runs, and the classes the policy counts.
fn any_password() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9!#%&*_.-]{0,140}",
        "\\PC{0,300}",
        (1_usize..5_000).prop_map(|n| "Aa1!".repeat(n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Accepted means every rule holds; each reported violation is true of the input.
    #[test]
    fn violations_are_exactly_the_broken_rules(pw in any_password()) {
        let violations = check(&pw, &pw, None);
        let text: String = pw.nfc().collect();
        let len = text.chars().count();
        prop_assert_eq!(violations.contains(&V::TooShort), len < 8);
        prop_assert_eq!(violations.contains(&V::TooLong), len > 128);
        prop_assert_eq!(violations.contains(&V::MissingUppercase), !text.chars().any(char::is_uppercase));
        prop_assert_eq!(violations.contains(&V::MissingLowercase), !text.chars().any(char::is_lowercase));
        prop_assert_eq!(violations.contains(&V::MissingDigit), !text.chars().any(char::is_numeric));
        prop_assert_eq!(violations.contains(&V::MissingSpecial), text.chars().all(char::is_alphanumeric));
        prop_assert!(!violations.contains(&V::ConfirmationMismatch));
        prop_assert!(!violations.contains(&V::ContainsEmail), "no email given");
        if violations.is_empty() {
            prop_assert!((8..=128).contains(&len));
        }
        // Stable: the same input always gets the same answer.
        prop_assert_eq!(check(&pw, &pw, None), violations);
    }

    /// A password with every class, of an allowed length, is accepted unless it is a common one.
    #[test]
    fn strong_passwords_are_accepted(
        upper in "[A-ZÑÁ]{1,10}", lower in "[a-zñé]{1,10}", digits in "[0-9]{1,10}",
        special in "[!#$%&*+,./:;<=>?@^_~-]{1,10}", filler in "[a-zA-Z0-9]{0,80}",
    ) {
        let pw = format!("{upper}{filler}{lower}{digits}{special}");
        prop_assume!(pw.chars().count() >= 8);
        let violations = check(&pw, &pw, None);
        prop_assert!(
            violations.is_empty() || violations == vec![V::TooCommon],
            "{pw:?}: {violations:?}"
        );
    }

    /// A different confirmation is always reported; the same text in another Unicode form is not.
    #[test]
    fn confirmation_compares_normalized_text(pw in any_password(), other in any_password()) {
        prop_assume!(pw.nfc().collect::<String>() != other.nfc().collect::<String>());
        prop_assert!(check(&pw, &other, None).contains(&V::ConfirmationMismatch));
        let decomposed: String = pw.nfd().collect();
        prop_assert!(!check(&pw, &decomposed, None).contains(&V::ConfirmationMismatch));
    }

    /// The email rule: a password containing the address's local part (3+ characters, any case)
    /// is refused.
    #[test]
    fn passwords_containing_the_email_are_refused(
        local in "[a-z]{3,12}", before in "[A-Z0-9!]{0,6}", after in "[a-z0-9#]{0,6}",
    ) {
        let email = Email::parse(&format!("{local}@example.com")).unwrap();
        let pw = format!("{before}{}{after}", local.to_uppercase());
        prop_assert!(check(&pw, &pw, Some(&email)).contains(&V::ContainsEmail));
    }
}
