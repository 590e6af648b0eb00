use std::error::Error;
use std::fmt;

/// Marks an infrastructure error as "a backing service (the database) is unreachable right now",
/// as opposed to a bug or corrupt data. Adapters wrap connection failures in it; the HTTP adapter
/// answers 503 instead of 500 when it finds one in an error's cause chain ([`is_unavailable`]),
/// so clients and load balancers know to retry later.
///
/// ```
/// use kernel::{Unavailable, is_unavailable};
///
/// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// let err = Unavailable::new(refused);
/// assert!(is_unavailable(&err));
/// assert!(!is_unavailable(&std::io::Error::from(std::io::ErrorKind::InvalidData)));
/// ```
#[derive(Debug)]
pub struct Unavailable {
    source: Box<dyn Error + Send + Sync + 'static>,
}

impl Unavailable {
    /// Wraps the connection failure `source`.
    pub fn new(source: impl Error + Send + Sync + 'static) -> Self {
        Self {
            source: Box::new(source),
        }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a backing service is unavailable")
    }
}

impl Error for Unavailable {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// `true` when `err` or one of its causes is an [`Unavailable`].
#[must_use]
pub fn is_unavailable(err: &(dyn Error + 'static)) -> bool {
    let mut current = Some(err);
    // Bounded: a cause chain longer than this is not one we built.
    for _ in 0..32 {
        let Some(e) = current else {
            return false;
        };
        if e.is::<Unavailable>() {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(Unavailable);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer")
        }
    }
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn found_anywhere_in_the_cause_chain() {
        let inner = Unavailable::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(is_unavailable(&Outer(inner)));
        assert!(!is_unavailable(&std::fmt::Error));
        assert_eq!(
            Unavailable::new(std::fmt::Error).to_string(),
            "a backing service is unavailable"
        );
    }
}
