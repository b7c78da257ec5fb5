//! Numbers as Vietnamese documents write them: `.` groups thousands, `,` marks decimals
//! (`1.234`, `1.234,5`), and a percentage has a space before the sign (`92,5 %`).

/// An integer with thousands grouped: `1234567` → `1.234.567`.
pub fn integer(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    out
}

/// A number with at most `decimals` decimals, trailing zeros dropped: `1234.5` → `1.234,5`.
pub fn decimal(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let text = format!("{:.*}", decimals, x.abs());
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let fraction = fraction.trim_end_matches('0');
    let whole: i64 = whole.parse().unwrap_or(0);
    let negative = x < 0.0 && (whole != 0 || !fraction.is_empty());
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    out.push_str(&integer(whole));
    if !fraction.is_empty() {
        out.push(',');
        out.push_str(fraction);
    }
    out
}

/// A ratio as a percentage with one decimal: `0.925` → `92,5 %`, `1.0` → `100 %`.
pub fn percent(ratio: f64) -> String {
    format!("{} %", decimal(ratio * 100.0, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vietnamese_number_formats() {
        assert_eq!(integer(0), "0");
        assert_eq!(integer(999), "999");
        assert_eq!(integer(1234), "1.234");
        assert_eq!(integer(1_234_567), "1.234.567");
        assert_eq!(integer(-5383), "-5.383");
        assert_eq!(decimal(1234.5, 1), "1.234,5");
        assert_eq!(decimal(1234.0, 1), "1.234");
        assert_eq!(decimal(0.25, 2), "0,25");
        assert_eq!(decimal(-0.01, 1), "0");
        assert_eq!(percent(0.925), "92,5 %");
        assert_eq!(percent(1.0), "100 %");
        assert_eq!(percent(0.96581), "96,6 %");
    }
}
