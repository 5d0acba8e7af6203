//! numeric and money as numbers that SQLite compares, sorts and sums (mirror format 3):
//! INTEGER when the value is integral and fits, else the nearest REAL, with the exact text
//! kept beside only for the values the number does not give back (DESIGN §17).
//!
//! The text a stored number gives back is its shortest decimal in plain notation, padded
//! with zeros to the column's scale (`numeric(12,2)`, money): so `12.50` in `numeric(12,2)`
//! needs nothing beside it, while `1.50` in an unconstrained numeric does.

use std::fmt::Write;

use rusqlite::types::ValueRef;

use crate::copy::types;

/// What a decimal becomes in its mirror column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StoredDecimal {
    Integer(i64),
    /// The nearest double; ±Infinity as SQLite's ±Inf, values beyond double's range as
    /// the largest finite double of their sign (so they still sort below Infinity).
    Real(f64),
    /// `NaN`, kept as that text: SQLite sorts text after every number, as PostgreSQL
    /// sorts NaN after every other value.
    NaN,
}

/// The stored form of a decimal's exact text (PostgreSQL's numeric output) and whether
/// the exact text must be kept beside it to be given back.
pub fn store(exact: &str, scale: Option<u16>) -> (StoredDecimal, bool) {
    let stored = stored_form(exact);
    let given_back = match stored {
        // An i64 is exact; a normal double is exact for 15 significant digits (DBL_DIG),
        // its shortest text then being those digits. Either way only the fraction's
        // length can differ: the fast path of every export of money-like columns.
        StoredDecimal::Integer(_) => fraction_is_given_back(exact, scale),
        StoredDecimal::Real(value)
            if value.is_normal() && value.abs() != f64::MAX && significant_digits(exact) <= 15 =>
        {
            fraction_is_given_back(exact, scale)
        }
        _ => {
            let mut same = SameAs::new(exact);
            write_text(&mut same, stored, scale);
            same.matched()
        }
    };
    (stored, !given_back)
}

/// Whether the fraction digits of `exact` are the ones a number's shortest text, padded
/// to `scale`, would have: exactly `scale` of them, or more without a trailing zero.
fn fraction_is_given_back(exact: &str, scale: Option<u16>) -> bool {
    let fraction = exact.split_once('.').map_or("", |(_, fraction)| fraction);
    let scale = usize::from(scale.unwrap_or(0));
    fraction.len() == scale || (fraction.len() > scale && !fraction.ends_with('0'))
}

/// Digits from the first non-zero one to the last non-zero one (`-0.0120` has 2).
fn significant_digits(text: &str) -> usize {
    let digits = text.as_bytes();
    let first = digits.iter().position(|b| (b'1'..=b'9').contains(b));
    let last = digits.iter().rposition(|b| (b'1'..=b'9').contains(b));
    match (first, last) {
        (Some(first), Some(last)) => {
            let point_between = digits[first..last].contains(&b'.');
            last - first + 1 - usize::from(point_between)
        }
        _ => 0,
    }
}

/// The number `exact` is stored as, before any comparison with its text.
fn stored_form(exact: &str) -> StoredDecimal {
    match exact {
        "NaN" => return StoredDecimal::NaN,
        "Infinity" => return StoredDecimal::Real(f64::INFINITY),
        "-Infinity" => return StoredDecimal::Real(f64::NEG_INFINITY),
        _ => {}
    }
    if let Some(integer) = integral_value(exact) {
        return StoredDecimal::Integer(integer);
    }
    match exact.parse::<f64>() {
        Ok(value) if value.is_infinite() => StoredDecimal::Real(f64::MAX.copysign(value)),
        Ok(value) => StoredDecimal::Real(value),
        // Not a number PostgreSQL prints; kept as the nearest thing: nothing lost, since the
        // exact text then differs from what NaN gives back.
        Err(_) => StoredDecimal::NaN,
    }
}

/// The value of `-123.000` as an i64, when the text is integral and in range.
fn integral_value(text: &str) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if !fraction.bytes().all(|b| b == b'0') {
        return None;
    }
    whole.parse::<i64>().ok()
}

/// Writes the text a stored decimal gives back: PostgreSQL's numeric input and output
/// form, padded to `scale` fraction digits.
pub fn write_text<W: Write>(out: &mut W, stored: StoredDecimal, scale: Option<u16>) {
    let scale = usize::from(scale.unwrap_or(0));
    match stored {
        StoredDecimal::NaN => {
            let _ = out.write_str("NaN");
        }
        StoredDecimal::Integer(value) => {
            let _ = write!(out, "{value}");
            if scale > 0 {
                let _ = out.write_char('.');
                types::write_zeros(out, scale);
            }
        }
        StoredDecimal::Real(value) if value.is_infinite() => {
            let _ = out.write_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
        }
        StoredDecimal::Real(value) => write_plain(out, value, scale),
    }
}

/// A finite double's shortest round-trip digits in plain notation (never an exponent),
/// with at least `scale` fraction digits.
fn write_plain<W: Write>(out: &mut W, value: f64, scale: usize) {
    let mut buffer = ryu::Buffer::new();
    let (negative, digits, exponent) = types::decimal_parts(buffer.format_finite(value));
    let digits = digits.as_str();
    if negative && digits != "0" {
        let _ = out.write_char('-');
    }
    let fraction_digits = types::write_plain_digits(out, digits, exponent);
    if fraction_digits < scale {
        if fraction_digits == 0 {
            let _ = out.write_char('.');
        }
        types::write_zeros(out, scale - fraction_digits);
    }
}

/// The decimal a mirror cell holds; `None` for text other than `NaN` (a format 1 or 2
/// mirror's exact text, or a value someone wrote into the mirror).
pub fn from_cell(value: ValueRef<'_>) -> Option<StoredDecimal> {
    match value {
        ValueRef::Integer(i) => Some(StoredDecimal::Integer(i)),
        ValueRef::Real(f) => Some(StoredDecimal::Real(f)),
        ValueRef::Text(b"NaN") => Some(StoredDecimal::NaN),
        _ => None,
    }
}

/// Whether a cell still holds the number its kept exact text was stored as: an edit of the
/// data table after export leaves the two disagreeing, and the exact text is then stale.
pub fn cell_agrees(exact: &str, cell: ValueRef<'_>) -> bool {
    match (stored_form(exact), from_cell(cell)) {
        (StoredDecimal::Integer(a), Some(StoredDecimal::Integer(b))) => a == b,
        (StoredDecimal::Real(a), Some(StoredDecimal::Real(b))) => a == b,
        // A column of NUMERIC affinity keeps an integral REAL as INTEGER.
        (StoredDecimal::Real(a), Some(StoredDecimal::Integer(b))) => a == b as f64,
        (StoredDecimal::NaN, Some(StoredDecimal::NaN)) => true,
        _ => false,
    }
}

/// A `fmt::Write` that only checks that what is written spells `expected`, allocating nothing.
struct SameAs<'a> {
    rest: &'a str,
    same: bool,
}

impl<'a> SameAs<'a> {
    fn new(expected: &'a str) -> Self {
        SameAs {
            rest: expected,
            same: true,
        }
    }

    fn matched(&self) -> bool {
        self.same && self.rest.is_empty()
    }
}

impl Write for SameAs<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        match self.rest.strip_prefix(text) {
            Some(rest) if self.same => self.rest = rest,
            _ => self.same = false,
        }
        Ok(())
    }
}

/// The double a float4 is stored as: the nearest one to float4's shortest text (`-34.84`,
/// not the widened `-34.84000015258789`), which narrows back to the identical float4.
pub fn float4_stored(value: f32) -> f64 {
    if !value.is_finite() {
        return f64::from(value);
    }
    let mut buffer = ryu::Buffer::new();
    match buffer.format_finite(value).parse::<f64>() {
        // Checked rather than trusted: a second rounding must not move it to a neighbour.
        Ok(nearest) if (nearest as f32).to_bits() == value.to_bits() => nearest,
        _ => f64::from(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given_back(stored: StoredDecimal, scale: Option<u16>) -> String {
        let mut text = String::new();
        write_text(&mut text, stored, scale);
        text
    }

    #[test]
    fn values_the_number_gives_back_need_no_exact_text() {
        use StoredDecimal::*;
        for (exact, scale, stored) in [
            ("0", None, Integer(0)),
            ("-42", None, Integer(-42)),
            ("12.50", Some(2), Real(12.5)),
            ("12.00", Some(2), Integer(12)),
            ("-0.01", Some(2), Real(-0.01)),
            ("0.00", Some(2), Integer(0)),
            ("9223372036854775807", None, Integer(i64::MAX)),
            ("-9223372036854775808", None, Integer(i64::MIN)),
            ("1000000000000000000000000000000", None, Real(1e30)),
            ("0.000001", None, Real(1e-6)),
            ("123456789012.345", None, Real(123456789012.345)),
            ("Infinity", None, Real(f64::INFINITY)),
            ("-Infinity", Some(2), Real(f64::NEG_INFINITY)),
            ("NaN", Some(2), NaN),
        ] {
            assert_eq!(store(exact, scale), (stored, false), "{exact} scale {scale:?}");
            assert_eq!(given_back(stored, scale), exact);
        }
    }

    /// 10^400 as PostgreSQL prints it: beyond the largest double.
    const HUGE: &str = concat!(
        "1",
        "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    );

    /// 10^-400: below the smallest double.
    const TINY: &str = concat!(
        "0.",
        "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "1"
    );

    #[test]
    fn values_the_number_cannot_give_back_keep_their_text() {
        for (exact, scale) in [
            // A display scale an unconstrained numeric keeps.
            ("1.50", None),
            ("12.00", None),
            // More digits than a double carries.
            ("3.14159265358979323846264338327950288", None),
            ("12345678901234567.89", Some(2)),
            ("9223372036854775808", None),
            ("-1234567890123456789012345678901234567890", None),
            // Beyond double's range either way.
            (HUGE, None),
            (TINY, None),
        ] {
            let (stored, needs_exact) = store(exact, scale);
            assert!(
                needs_exact,
                "{exact} is given back as {}",
                given_back(stored, scale)
            );
            assert!(cell_agrees(exact, as_cell(&stored)), "{exact}");
        }
        assert_eq!(store(HUGE, None).0, StoredDecimal::Real(f64::MAX));
        assert_eq!(store(&format!("-{HUGE}"), None).0, StoredDecimal::Real(-f64::MAX));
        assert_eq!(store(TINY, None).0, StoredDecimal::Real(0.0));
        let smallest_normal = format!("{:.400}", f64::MIN_POSITIVE);
        let trimmed = smallest_normal.trim_end_matches('0');
        assert_eq!(store(trimmed, None).0, StoredDecimal::Real(f64::MIN_POSITIVE));
    }

    fn as_cell(stored: &StoredDecimal) -> ValueRef<'static> {
        match *stored {
            StoredDecimal::Integer(i) => ValueRef::Integer(i),
            StoredDecimal::Real(f) => ValueRef::Real(f),
            StoredDecimal::NaN => ValueRef::Text(b"NaN"),
        }
    }

    /// The slow path alone: what the number gives back, compared with the text.
    fn given_back_exactly(exact: &str, scale: Option<u16>) -> bool {
        let mut same = SameAs::new(exact);
        write_text(&mut same, stored_form(exact), scale);
        same.matched()
    }

    #[test]
    fn the_fast_path_decides_as_the_full_comparison() {
        let mut texts = Vec::new();
        for whole in [
            "0",
            "1",
            "-1",
            "12",
            "-123456789",
            "100000",
            "999999999999999",
            "1234567890123456",
        ] {
            for fraction in [
                "",
                "0",
                "00",
                "5",
                "50",
                "05",
                "25",
                "123",
                "1230",
                "000001",
                "999999999",
            ] {
                texts.push(if fraction.is_empty() {
                    whole.to_owned()
                } else {
                    format!("{whole}.{fraction}")
                });
            }
        }
        texts.extend(["0.1", "0.30000000000000004", "123456789012345.6"].map(str::to_owned));
        // 15 significant digits at the ends of double's range and beside powers of ten, in
        // PostgreSQL's plain notation: the fast path's own ground.
        let plain = |mantissa: u64, exponent: i32| -> String {
            let digits = mantissa.to_string();
            let mut text = String::new();
            types::write_plain_digits(&mut text, &digits, exponent + digits.len() as i32 - 1);
            text
        };
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for exponent in (-320..=290).step_by(7) {
            for mantissa in [999_999_999_999_999, 100_000_000_000_001, 222_507_385_850_720] {
                texts.push(plain(mantissa, exponent));
            }
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            texts.push(plain(seed % 1_000_000_000_000_000 + 1, exponent));
        }
        // Near the bottom of double's range, in PostgreSQL's plain notation.
        for tiny in [1e-307, 2.5e-308, 1e-310] {
            texts.push(format!("{tiny:.330}").trim_end_matches('0').to_owned());
        }
        for text in &texts {
            for scale in [None, Some(0), Some(1), Some(2), Some(3), Some(9)] {
                let fast = !store(text, scale).1;
                assert_eq!(fast, given_back_exactly(text, scale), "{text} scale {scale:?}");
            }
        }
        assert_eq!(significant_digits("-0.0120"), 2);
        assert_eq!(significant_digits("1200"), 2);
        assert_eq!(significant_digits("10.01"), 4);
        assert_eq!(significant_digits("0"), 0);
    }

    #[test]
    fn an_edited_cell_no_longer_agrees_with_its_exact_text() {
        let exact = "3.14159265358979323846";
        assert!(cell_agrees(exact, ValueRef::Real(std::f64::consts::PI)));
        assert!(!cell_agrees(exact, ValueRef::Real(3.0)));
        assert!(!cell_agrees(exact, ValueRef::Text(b"3.14")));
        assert!(!cell_agrees(exact, ValueRef::Null));
        // NUMERIC affinity keeps the double 1.0 as the integer 1.
        assert!(cell_agrees("0.99999999999999999999", ValueRef::Integer(1)));
        assert!(cell_agrees("NaN", ValueRef::Text(b"NaN")));
    }

    #[test]
    fn float4_is_stored_as_its_shortest_text_and_narrows_back() {
        assert_eq!(float4_stored(-34.84), -34.84);
        assert_eq!(float4_stored(0.1), 0.1);
        assert_eq!(float4_stored(f32::MAX), 3.4028235e38);
        for bits in (0..u32::MAX).step_by(65_537) {
            let value = f32::from_bits(bits);
            if value.is_finite() {
                assert_eq!((float4_stored(value) as f32).to_bits(), bits, "{value:e}");
            }
        }
    }
}
