//! Decoders for PostgreSQL's binary send format of the types pgmirror converts natively.
//! Text forms follow PostgreSQL's ISO output, so PostgreSQL reads them back unchanged.

use std::fmt::Write;

use super::CopyError;

/// Microseconds in a day.
const USECS_PER_DAY: i64 = 86_400_000_000;
/// Julian day number of 2000-01-01, PostgreSQL's date epoch.
const POSTGRES_EPOCH_JDATE: i64 = 2_451_545;

pub fn fixed<const N: usize>(bytes: &[u8], type_name: &'static str) -> Result<[u8; N], CopyError> {
    bytes
        .try_into()
        .map_err(|_| CopyError::malformed(type_name, format!("{} bytes, expected {N}", bytes.len())))
}

pub fn int2(bytes: &[u8]) -> Result<i64, CopyError> {
    Ok(i16::from_be_bytes(fixed(bytes, "smallint")?) as i64)
}
pub fn int4(bytes: &[u8]) -> Result<i64, CopyError> {
    Ok(i32::from_be_bytes(fixed(bytes, "integer")?) as i64)
}
pub fn int8(bytes: &[u8]) -> Result<i64, CopyError> {
    Ok(i64::from_be_bytes(fixed(bytes, "bigint")?))
}
pub fn oid(bytes: &[u8]) -> Result<i64, CopyError> {
    Ok(u32::from_be_bytes(fixed(bytes, "oid")?) as i64)
}
pub fn bool(bytes: &[u8]) -> Result<bool, CopyError> {
    Ok(fixed::<1>(bytes, "boolean")?[0] != 0)
}
pub fn float4(bytes: &[u8]) -> Result<f64, CopyError> {
    Ok(f32::from_be_bytes(fixed(bytes, "real")?) as f64)
}
pub fn float8(bytes: &[u8]) -> Result<f64, CopyError> {
    Ok(f64::from_be_bytes(fixed(bytes, "double precision")?))
}

/// PostgreSQL's spelling of the non-finite floats; `None` for finite values.
pub fn non_finite_float_text(value: f64) -> Option<&'static str> {
    if value.is_nan() {
        Some("NaN")
    } else if value == f64::INFINITY {
        Some("Infinity")
    } else if value == f64::NEG_INFINITY {
        Some("-Infinity")
    } else {
        None
    }
}

/// A float as PostgreSQL prints it (extra_float_digits = 1, the default since 12): the
/// shortest digits that read back to the same value (float4's own for `single`), in fixed
/// notation for decimal exponents from -4 up to the type's precision (15 digits, float4 6)
/// and otherwise as `d.ddde+XX`.
pub fn write_pg_float<W: std::fmt::Write>(out: &mut W, value: f64, single: bool) {
    // Runs for every float a restore sends: nothing here allocates (only the rare halfway
    // case in pg_shortest_digits formats candidates).
    if let Some(text) = non_finite_float_text(value) {
        let _ = out.write_str(text);
        return;
    }
    let (negative, digits, exponent) = pg_shortest_digits(value, single);
    let digits = digits.as_str();
    if negative {
        let _ = out.write_char('-');
    }
    let precision = if single { 6 } else { 15 };
    if !(-4..precision).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let _ = out.write_str(first);
        if !rest.is_empty() {
            let _ = out.write_char('.');
            let _ = out.write_str(rest);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exponent < 0 { '-' } else { '+' },
            exponent.abs()
        );
    } else {
        write_plain_digits(out, digits, exponent);
    }
}

/// Writes significant `digits` whose first digit stands at decimal `exponent` in plain
/// notation (`0.00123`, `12300`, `12.3`, `0`); returns how many fraction digits it wrote.
pub(crate) fn write_plain_digits<W: std::fmt::Write>(out: &mut W, digits: &str, exponent: i32) -> usize {
    if exponent < 0 {
        let _ = out.write_str("0.");
        let leading = (-exponent - 1) as usize;
        write_zeros(out, leading);
        let _ = out.write_str(digits);
        return leading + digits.len();
    }
    let whole = exponent as usize + 1;
    if digits.len() <= whole {
        let _ = out.write_str(digits);
        write_zeros(out, whole - digits.len());
        0
    } else {
        let _ = out.write_str(&digits[..whole]);
        let _ = out.write_char('.');
        let _ = out.write_str(&digits[whole..]);
        digits.len() - whole
    }
}

pub(crate) fn write_zeros<W: std::fmt::Write>(out: &mut W, count: usize) {
    for _ in 0..count {
        let _ = out.write_char('0');
    }
}

/// The significant digits of a decimal, kept on the stack (at most 17 for a float; the
/// buffer takes any text ryu or `{:e}` prints for one).
pub(crate) struct Digits {
    bytes: [u8; 40],
    len: usize,
}

impl Digits {
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("0")
    }
}

/// The digits PostgreSQL prints for a finite float: Ryu's shortest that reads back to the
/// same value, except that PostgreSQL (built without STRICTLY_SHORTEST) never takes a
/// decimal lying exactly halfway to a neighbouring float, where it prints more digits
/// (`1e23` is `9.999999999999999e+22`). Returns sign, digits and the first digit's exponent.
fn pg_shortest_digits(value: f64, single: bool) -> (bool, Digits, i32) {
    let mut buffer = ryu::Buffer::new();
    let shortest = if single {
        buffer.format_finite(value as f32)
    } else {
        buffer.format_finite(value)
    };
    let parts = decimal_parts(shortest);
    if !is_halfway(value, single, parts.1.as_str(), parts.2) {
        return parts;
    }
    // The closest decimal of each longer length, until one lies strictly inside.
    for length in parts.1.len + 1..=17 {
        let candidate = if single {
            format!("{:.*e}", length - 1, value as f32)
        } else {
            format!("{:.*e}", length - 1, value)
        };
        let reads_back = if single {
            candidate.parse::<f32>().ok() == Some(value as f32)
        } else {
            candidate.parse::<f64>().ok() == Some(value)
        };
        let longer = decimal_parts(&candidate);
        if reads_back && !is_halfway(value, single, longer.1.as_str(), longer.2) {
            return longer;
        }
    }
    parts
}

/// Whether `0.digits × 10^(exponent + 1)` (the first digit at `exponent`) is exactly the
/// midpoint between `value` and one of its neighbouring floats (float4 for `single`).
/// A midpoint is an odd number of at most 54 bits (float4: 25) times a power of two; the
/// decimal is brought to that form exactly in 128-bit integers, or shown not to have it.
fn is_halfway(value: f64, single: bool, digits: &str, exponent: i32) -> bool {
    let Ok(mantissa) = digits.parse::<u128>() else {
        return false;
    };
    if mantissa == 0 {
        return false;
    }
    // value = mantissa × 10^scale
    let scale = exponent - (digits.len() as i32 - 1);
    let (odd_bits, mantissa_bits, bias) = if single { (25, 23, 150) } else { (54, 52, 1075) };
    let five_power = |n: i32| 5u128.checked_pow(n as u32);
    let (mut odd, mut two_exponent) = if scale >= 0 {
        match five_power(scale).and_then(|p| mantissa.checked_mul(p)) {
            Some(product) => (product, scale),
            None => return false,
        }
    } else {
        match five_power(-scale) {
            Some(p) if mantissa % p == 0 => (mantissa / p, scale),
            _ => return false,
        }
    };
    let zeros = odd.trailing_zeros() as i32;
    odd >>= zeros;
    two_exponent += zeros;
    if odd >> odd_bits != 0 {
        return false;
    }
    let (field_mantissa, field_exponent) = if single {
        let bits = (value as f32).abs().to_bits();
        (
            u128::from(bits & 0x7f_ffff),
            i32::try_from((bits >> 23) & 0xff).unwrap_or(0),
        )
    } else {
        let bits = value.abs().to_bits();
        (
            u128::from(bits & ((1u64 << 52) - 1)),
            i32::try_from((bits >> 52) & 0x7ff).unwrap_or(0),
        )
    };
    // value = significand × 2^power, the implicit bit included for normal numbers.
    let (significand, power) = if field_exponent == 0 {
        (field_mantissa, 1 - bias)
    } else {
        (field_mantissa | (1u128 << mantissa_bits), field_exponent - bias)
    };
    let above = (2 * significand + 1, power - 1);
    // Below a power of two the neighbour is half as far away.
    let below = if field_mantissa == 0 && field_exponent > 1 {
        (4 * significand - 1, power - 2)
    } else {
        (2 * significand - 1, power - 1)
    };
    (odd, two_exponent) == above || (odd, two_exponent) == below
}

/// A decimal number's text (`-12.5`, `1e-7`, `4.0`) as its sign, significant digits and
/// the decimal exponent of the first digit (`-12.5` → `125`, 1). Zero is `0`, 0.
pub(crate) fn decimal_parts(text: &str) -> (bool, Digits, i32) {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = text.split_once(['e', 'E']).unwrap_or((text, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits = Digits {
        bytes: [0; 40],
        len: 0,
    };
    let mut leading = 0;
    for byte in whole.bytes().chain(fraction.bytes()) {
        if digits.len == 0 && byte == b'0' {
            leading += 1;
        } else if digits.len < digits.bytes.len() {
            digits.bytes[digits.len] = byte;
            digits.len += 1;
        }
    }
    while digits.len > 0 && digits.bytes[digits.len - 1] == b'0' {
        digits.len -= 1;
    }
    if digits.len == 0 {
        digits.bytes[0] = b'0';
        digits.len = 1;
        return (negative, digits, 0);
    }
    let first_digit_exponent = whole.len() as i32 - 1 - leading + exponent;
    (negative, digits, first_digit_exponent)
}

pub fn write_uuid(out: &mut String, bytes: &[u8]) -> Result<(), CopyError> {
    let b: [u8; 16] = fixed(bytes, "uuid")?;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let _ = write!(out, "{byte:02x}");
    }
    Ok(())
}

/// bytea in PostgreSQL's hex text form (`\x0a1b`).
pub fn write_bytea_hex(out: &mut String, bytes: &[u8]) {
    out.push_str("\\x");
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
}

pub fn utf8<'a>(bytes: &'a [u8], type_name: &'static str) -> Result<&'a str, CopyError> {
    std::str::from_utf8(bytes).map_err(|e| CopyError::malformed(type_name, format!("invalid UTF-8: {e}")))
}

/// jsonb's binary form is a version byte (1) followed by the JSON text.
pub fn jsonb_text(bytes: &[u8]) -> Result<&str, CopyError> {
    match bytes.split_first() {
        Some((1, text)) => utf8(text, "jsonb"),
        Some((version, _)) => Err(CopyError::malformed(
            "jsonb",
            format!("unknown version {version}"),
        )),
        None => Err(CopyError::malformed("jsonb", "empty value")),
    }
}

/// numeric in exact decimal text with its display scale kept (`12.50`, `NaN`, `Infinity`).
pub fn write_numeric(out: &mut String, bytes: &[u8]) -> Result<(), CopyError> {
    const NEGATIVE: u16 = 0x4000;
    const NAN: u16 = 0xC000;
    const PINF: u16 = 0xD000;
    const NINF: u16 = 0xF000;
    if bytes.len() < 8 {
        return Err(CopyError::malformed("numeric", "header shorter than 8 bytes"));
    }
    let ndigits = u16::from_be_bytes([bytes[0], bytes[1]]) as usize;
    let weight = i16::from_be_bytes([bytes[2], bytes[3]]) as i64;
    let sign = u16::from_be_bytes([bytes[4], bytes[5]]);
    let dscale = u16::from_be_bytes([bytes[6], bytes[7]]) as usize;
    if bytes.len() != 8 + 2 * ndigits {
        return Err(CopyError::malformed(
            "numeric",
            format!("{ndigits} digits in {} bytes", bytes.len()),
        ));
    }
    match sign {
        NAN => {
            out.push_str("NaN");
            return Ok(());
        }
        PINF => {
            out.push_str("Infinity");
            return Ok(());
        }
        NINF => {
            out.push_str("-Infinity");
            return Ok(());
        }
        NEGATIVE => out.push('-'),
        0 => {}
        other => {
            return Err(CopyError::malformed(
                "numeric",
                format!("unknown sign {other:#x}"),
            ))
        }
    }
    let digit = |index: i64| -> Result<u16, CopyError> {
        if index < 0 || index as usize >= ndigits {
            return Ok(0);
        }
        let at = 8 + 2 * index as usize;
        let value = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        if value > 9999 {
            return Err(CopyError::malformed(
                "numeric",
                format!("base-10000 digit {value}"),
            ));
        }
        Ok(value)
    };
    if weight < 0 {
        out.push('0');
    } else {
        push_padded(out, digit(0)? as u64, 1);
        for index in 1..=weight {
            push_padded(out, digit(index)? as u64, 4);
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut written = 0;
        let mut index = weight + 1;
        while written < dscale {
            let start = out.len();
            push_padded(out, digit(index)? as u64, 4);
            let take = (dscale - written).min(4);
            out.truncate(start + take);
            written += take;
            index += 1;
        }
    }
    Ok(())
}

/// Proleptic Gregorian (year, month, day) of a Julian day number, as PostgreSQL's j2date.
fn julian_to_date(julian_day: i64) -> (i64, u32, u32) {
    let mut julian = julian_day + 32044;
    let mut quad = julian.div_euclid(146_097);
    let extra = (julian - quad * 146_097) * 4 + 3;
    julian += 60 + quad * 3 + extra / 146_097;
    quad = julian.div_euclid(1461);
    julian -= quad * 1461;
    let mut year = julian * 4 / 1461;
    julian = if year != 0 {
        (julian + 305) % 365
    } else {
        (julian + 306) % 366
    } + 123;
    year += quad * 4;
    let quad = julian * 2141 / 65536;
    let day = julian - 7834 * quad / 256;
    let month = (quad + 10) % 12 + 1;
    (year - 4800, month as u32, day as u32)
}

/// "00".."99": two digits per lookup. Dates and times are formatted for every row of a
/// table, where `write!` and digit-by-digit loops showed in the export's profile.
const TWO_DIGITS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends `value` (below 100) as two digits.
fn push_two(out: &mut String, value: u64) {
    let at = (value % 100) as usize * 2;
    out.push(TWO_DIGITS[at] as char);
    out.push(TWO_DIGITS[at + 1] as char);
}

/// Appends `value` zero-padded to at least `width` digits.
fn push_padded(out: &mut String, value: u64, width: usize) {
    match (value, width) {
        (0..=9, 1) => out.push((b'0' + value as u8) as char),
        (0..=99, 2) => push_two(out, value),
        (0..=9999, 4) => {
            push_two(out, value / 100);
            push_two(out, value % 100);
        }
        // Fractions of a second (widths 1 to 6) and long years land here once per value:
        // digits on the stack, not a String per call.
        _ => {
            let mut digits = [b'0'; 20];
            let mut start = digits.len();
            let mut rest = value;
            loop {
                start -= 1;
                digits[start] = b'0' + (rest % 10) as u8;
                rest /= 10;
                if rest == 0 {
                    break;
                }
            }
            let shown = (digits.len() - start).max(width.min(digits.len()));
            out.extend(digits[digits.len() - shown..].iter().map(|&digit| digit as char));
        }
    }
}

/// Writes `YYYY-MM-DD` and returns the suffix (` BC` or nothing) that must end the value.
fn write_date_part(out: &mut String, days_since_2000: i64) -> &'static str {
    let (year, month, day) = julian_to_date(days_since_2000 + POSTGRES_EPOCH_JDATE);
    let (shown_year, suffix) = if year <= 0 { (1 - year, " BC") } else { (year, "") };
    push_padded(out, shown_year as u64, 4);
    out.push('-');
    push_padded(out, month as u64, 2);
    out.push('-');
    push_padded(out, day as u64, 2);
    suffix
}

fn write_time_of_day(out: &mut String, usecs: i64) {
    let secs = (usecs / 1_000_000) as u64;
    let fraction = (usecs % 1_000_000) as u64;
    push_padded(out, secs / 3600, 2);
    out.push(':');
    push_padded(out, secs / 60 % 60, 2);
    out.push(':');
    push_padded(out, secs % 60, 2);
    if fraction != 0 {
        let mut digits = fraction;
        let mut width = 6;
        while digits.is_multiple_of(10) {
            digits /= 10;
            width -= 1;
        }
        out.push('.');
        push_padded(out, digits, width);
    }
}

pub fn write_date(out: &mut String, bytes: &[u8]) -> Result<(), CopyError> {
    let days = i32::from_be_bytes(fixed(bytes, "date")?);
    match days {
        i32::MAX => out.push_str("infinity"),
        i32::MIN => out.push_str("-infinity"),
        _ => {
            let suffix = write_date_part(out, days as i64);
            out.push_str(suffix);
        }
    }
    Ok(())
}

/// timestamp (`with_zone` false) or timestamptz in UTC (`+00:00`); BC dates end in ` BC`.
pub fn write_timestamp(out: &mut String, bytes: &[u8], with_zone: bool) -> Result<(), CopyError> {
    let usecs = i64::from_be_bytes(fixed(bytes, "timestamp")?);
    match usecs {
        i64::MAX => out.push_str("infinity"),
        i64::MIN => out.push_str("-infinity"),
        _ => {
            let suffix = write_date_part(out, usecs.div_euclid(USECS_PER_DAY));
            out.push(' ');
            write_time_of_day(out, usecs.rem_euclid(USECS_PER_DAY));
            if with_zone {
                out.push_str("+00:00");
            }
            out.push_str(suffix);
        }
    }
    Ok(())
}

pub fn write_time(out: &mut String, bytes: &[u8]) -> Result<(), CopyError> {
    let usecs = i64::from_be_bytes(fixed(bytes, "time")?);
    if !(0..=USECS_PER_DAY).contains(&usecs) {
        return Err(CopyError::malformed("time", format!("{usecs} microseconds")));
    }
    write_time_of_day(out, usecs);
    Ok(())
}

/// timetz: the wire carries the zone as seconds *west* of UTC; text shows the offset east.
pub fn write_timetz(out: &mut String, bytes: &[u8]) -> Result<(), CopyError> {
    let raw: [u8; 12] = fixed(bytes, "time with time zone")?;
    write_time(out, &raw[..8])?;
    let seconds_west = i32::from_be_bytes([raw[8], raw[9], raw[10], raw[11]]);
    let east = -(seconds_west as i64);
    let sign = if east < 0 { '-' } else { '+' };
    let abs = east.abs();
    // Always with minutes, which SQLite's time functions need (PostgreSQL leaves out
    // `:00`; see `convert::pg_zone_text`).
    let _ = write!(out, "{sign}{:02}:{:02}", abs / 3600, abs / 60 % 60);
    if abs % 60 != 0 {
        let _ = write!(out, ":{:02}", abs % 60);
    }
    Ok(())
}

/// The header of a binary array value and its elements, in storage order.
pub struct ArrayValue<'a> {
    /// (length, lower bound) per dimension; empty for an empty array.
    pub dims: Vec<(i32, i32)>,
    pub elements: Vec<Option<&'a [u8]>>,
}

pub fn parse_array(bytes: &[u8]) -> Result<ArrayValue<'_>, CopyError> {
    let bad = |reason: String| CopyError::malformed("array", reason);
    let read_i32 = |at: usize| -> Result<i32, CopyError> {
        bytes
            .get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| bad(format!("ends at byte {at}")))
    };
    let ndim = read_i32(0)?;
    if !(0..=6).contains(&ndim) {
        return Err(bad(format!("{ndim} dimensions")));
    }
    let mut pos = 12;
    let mut dims = Vec::with_capacity(ndim as usize);
    let mut total: usize = if ndim == 0 { 0 } else { 1 };
    for _ in 0..ndim {
        let length = read_i32(pos)?;
        let lower = read_i32(pos + 4)?;
        if length < 0 {
            return Err(bad(format!("dimension of length {length}")));
        }
        total = total
            .checked_mul(length as usize)
            .filter(|&n| n <= bytes.len())
            .ok_or_else(|| bad("more elements than bytes".into()))?;
        dims.push((length, lower));
        pos += 8;
    }
    let mut elements = Vec::with_capacity(total);
    for _ in 0..total {
        let length = read_i32(pos)?;
        pos += 4;
        if length == -1 {
            elements.push(None);
            continue;
        }
        let end = usize::try_from(length)
            .ok()
            .map(|l| pos + l)
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| bad(format!("element of length {length} past the end")))?;
        elements.push(Some(&bytes[pos..end]));
        pos = end;
    }
    if pos != bytes.len() {
        return Err(bad(format!(
            "{} bytes left after the elements",
            bytes.len() - pos
        )));
    }
    Ok(ArrayValue { dims, elements })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_numbers_match_rusts_own_zero_padding() {
        for width in 1..=8 {
            for value in [
                0u64,
                1,
                9,
                10,
                99,
                100,
                999,
                1000,
                9999,
                10_000,
                999_999,
                123_456_789,
                u64::MAX,
            ] {
                let mut out = String::new();
                push_padded(&mut out, value, width);
                assert_eq!(out, format!("{value:0width$}"), "{value} in {width} digits");
            }
        }
    }

    fn numeric(ndigits: &[u16], weight: i16, sign: u16, dscale: u16) -> String {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(ndigits.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&weight.to_be_bytes());
        bytes.extend_from_slice(&sign.to_be_bytes());
        bytes.extend_from_slice(&dscale.to_be_bytes());
        for d in ndigits {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        let mut out = String::new();
        write_numeric(&mut out, &bytes).unwrap();
        out
    }

    #[test]
    fn numeric_text_keeps_scale() {
        assert_eq!(numeric(&[1, 2345, 6700], 1, 0, 3), "12345.670");
        assert_eq!(numeric(&[], 0, 0, 2), "0.00");
        assert_eq!(numeric(&[5], -2, 0x4000, 8), "-0.00000005");
        assert_eq!(numeric(&[], 0, 0xC000, 0), "NaN");
        assert_eq!(numeric(&[1], 3, 0, 0), "1000000000000");
    }

    #[test]
    fn times_keep_leading_zeros_and_drop_trailing_ones() {
        let text = |usecs: i64| {
            let mut out = String::new();
            write_time_of_day(&mut out, usecs);
            out
        };
        assert_eq!(text(0), "00:00:00");
        assert_eq!(text(1), "00:00:00.000001");
        assert_eq!(text(3_723_500_000), "01:02:03.5");
        assert_eq!(text(86_400_000_000), "24:00:00");
        let mut out = String::new();
        push_padded(&mut out, 294_276, 4);
        assert_eq!(out, "294276");
    }

    #[test]
    fn dates_match_postgres() {
        let text = |days: i32| {
            let mut out = String::new();
            write_date(&mut out, &days.to_be_bytes()).unwrap();
            out
        };
        assert_eq!(text(0), "2000-01-01");
        assert_eq!(text(-1), "1999-12-31");
        assert_eq!(text(59), "2000-02-29");
        // PostgreSQL: SELECT '0044-03-15 BC'::date - '2000-01-01'::date = -746117
        assert_eq!(text(-746_117), "0044-03-15 BC");
        assert_eq!(text(i32::MAX), "infinity");
    }
}
