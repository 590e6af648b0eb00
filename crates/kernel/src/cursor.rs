//! Keyset cursors of lists ordered by time.

use uuid::Uuid;

use crate::Timestamp;

/// Where the next page of a list ordered by time, ties by id, starts: after the item made at
/// `at` with id `id`, in the list's order (newest first for alerts and incidents, oldest first
/// for users). Its text form (a page's `next_cursor`) is opaque to clients: the seconds and
/// nanoseconds since the epoch and the id, `1796040000.123456789.<32 hex digits>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeCursor {
    /// The last listed item's time.
    pub at: Timestamp,
    /// The last listed item's id.
    pub id: Uuid,
}

impl TimeCursor {
    /// Reads what [`Display`](std::fmt::Display) wrote; `None` for anything else.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        let (Some(secs), Some(nanos), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        if nanos.len() != 9 || id.len() != 32 {
            return None;
        }
        let at = Timestamp::from_timestamp(secs.parse().ok()?, nanos.parse().ok()?)?;
        let id = Uuid::try_parse(id).ok()?;
        Some(Self { at, id })
    }
}

impl std::fmt::Display for TimeCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.at.timestamp();
        let nanos = self.at.timestamp_subsec_nanos();
        write!(f, "{secs}.{nanos:09}.{}", self.id.simple())
    }
}

/// Cuts `items`, read with one more than `limit` asked for, to `limit`, and returns the
/// cursor of the last item kept when more follow (`None` on the last page).
pub fn cut_page<T, C>(items: &mut Vec<T>, limit: u64, cursor: impl Fn(&T) -> C) -> Option<C> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if items.len() > limit {
        items.truncate(limit);
        items.last().map(cursor)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_names_its_last_item_only_when_more_follow() {
        let mut more = vec![1, 2, 3];
        assert_eq!(cut_page(&mut more, 2, |n| n * 10), Some(20));
        assert_eq!(more, [1, 2]);
        let mut last = vec![1, 2];
        assert_eq!(cut_page(&mut last, 2, |n| n * 10), None);
        assert_eq!(last, [1, 2]);
    }

    #[test]
    fn a_cursor_reads_back_what_it_wrote_and_nothing_else() {
        let at = Timestamp::from_timestamp(1_796_040_000, 123_456_789).unwrap();
        let c = TimeCursor {
            at,
            id: Uuid::from_u128(0xabc),
        };
        let text = c.to_string();
        assert_eq!(
            text,
            "1796040000.123456789.00000000000000000000000000000abc"
        );
        assert_eq!(TimeCursor::parse(&text), Some(c));
        let early = TimeCursor {
            at: Timestamp::from_timestamp(-5, 7).unwrap(),
            id: Uuid::nil(),
        };
        assert_eq!(TimeCursor::parse(&early.to_string()), Some(early));
        for bad in [
            "",
            "1796040000",
            "1796040000.123456789",
            "1796040000.12345678.00000000000000000000000000000abc",
            "1796040000.123456789.00000000-0000-0000-0000-000000000abc",
            "1796040000.123456789.0000000000000000000000000000zabc",
            "1796040000.123456789.00000000000000000000000000000abc.1",
            "x.123456789.00000000000000000000000000000abc",
            "1796040000.1234567890.0000000000000000000000000000abc",
            "99999999999999999.000000000.00000000000000000000000000000abc",
        ] {
            assert_eq!(TimeCursor::parse(bad), None, "{bad}");
        }
    }
}
