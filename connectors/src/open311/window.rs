//! The time windows of one read: consecutive spans from the start to the end, each split in
//! half when the server's answer for it was full.

use chrono::{DateTime, Duration, FixedOffset, SecondsFormat};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: DateTime<FixedOffset>,
    pub end: DateTime<FixedOffset>,
}

impl Span {
    /// How a record's location names its window.
    pub fn label(&self) -> String {
        format!(
            "window {}..{}",
            self.start.to_rfc3339_opts(SecondsFormat::Secs, false),
            self.end.to_rfc3339_opts(SecondsFormat::Secs, false)
        )
    }
}

/// Spans in time order. Only the spans split but not yet read are held, so a long backfill
/// in short windows costs no memory.
pub struct Windows {
    /// Where the next fresh window starts.
    next_start: DateTime<FixedOffset>,
    end: DateTime<FixedOffset>,
    window: Duration,
    min_window: Duration,
    /// Halves of split windows still to read, the earliest last (a stack).
    split: Vec<Span>,
}

impl Windows {
    pub fn new(
        start: DateTime<FixedOffset>,
        end: DateTime<FixedOffset>,
        window: Duration,
        min_window: Duration,
    ) -> Self {
        Windows {
            next_start: start,
            end,
            window,
            min_window,
            split: Vec::new(),
        }
    }

    pub fn next_span(&mut self) -> Option<Span> {
        if let Some(span) = self.split.pop() {
            return Some(span);
        }
        if self.next_start >= self.end {
            return None;
        }
        let end = self
            .next_start
            .checked_add_signed(self.window)
            .map_or(self.end, |e| e.min(self.end));
        let span = Span {
            start: self.next_start,
            end,
        };
        self.next_start = end;
        Some(span)
    }

    /// Reads `span` again as two halves, the earlier first. `false` when the halves would be
    /// shorter than `min_window` (or than a second).
    pub fn split(&mut self, span: Span) -> bool {
        let half = Duration::seconds((span.end - span.start).num_seconds() / 2);
        if half < self.min_window || half < Duration::seconds(1) {
            return false;
        }
        let middle = span.start + half;
        self.split.push(Span {
            start: middle,
            end: span.end,
        });
        self.split.push(Span {
            start: span.start,
            end: middle,
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).unwrap()
    }

    #[test]
    fn windows_cover_the_range_and_split_in_order() {
        let mut w = Windows::new(
            t("2025-04-01T00:00:00+07:00"),
            t("2025-04-20T12:00:00+07:00"),
            Duration::days(7),
            Duration::days(1),
        );
        let first = w.next_span().unwrap();
        assert_eq!(first.end, t("2025-04-08T00:00:00+07:00"));
        assert!(w.split(first));
        let a = w.next_span().unwrap();
        assert_eq!(
            (a.start, a.end),
            (first.start, t("2025-04-04T12:00:00+07:00"))
        );
        // A 3.5-day half splits into 1.75 days; those would split below a day.
        assert!(w.split(a));
        let aa = w.next_span().unwrap();
        assert!(!w.split(aa));
        let ab = w.next_span().unwrap();
        assert_eq!(ab.start, aa.end);
        let b = w.next_span().unwrap();
        assert_eq!((b.start, b.end), (a.end, first.end));
        let second = w.next_span().unwrap();
        assert_eq!(second.start, first.end);
        let last = w.next_span().unwrap();
        assert_eq!(last.end, t("2025-04-20T12:00:00+07:00"));
        assert!(w.next_span().is_none());
    }

    #[test]
    fn nothing_to_read_when_start_is_not_before_end() {
        let now = t("2025-04-01T00:00:00+07:00");
        let mut w = Windows::new(now, now, Duration::days(7), Duration::minutes(1));
        assert!(w.next_span().is_none());
    }
}
