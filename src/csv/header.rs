//! The CSV header: read exactly one record from the input (quoted fields may hold
//! commas and newlines), and split it into column names.

use std::io::Read;

/// Reads bytes up to and including the newline that ends the first record.
pub fn read_record(input: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let mut record = Vec::new();
    let mut in_quotes = false;
    let mut byte = [0u8; 1];
    loop {
        if input.read(&mut byte)? == 0 {
            if record.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the input is empty; a header line is expected",
                ));
            }
            record.push(b'\n');
            return Ok(record);
        }
        record.push(byte[0]);
        match byte[0] {
            b'"' => in_quotes = !in_quotes,
            b'\n' if !in_quotes => return Ok(record),
            _ => {}
        }
    }
}

/// Splits a header record into names, unquoting `"..."` fields.
pub fn parse(record: &[u8]) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(record).map_err(|e| format!("not UTF-8: {e}"))?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    let mut names = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', false) if current.is_empty() => quoted = true,
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            ('"', true) => quoted = false,
            (',', false) => names.push(std::mem::take(&mut current)),
            (c, _) => current.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted column name".into());
    }
    names.push(current);
    if let Some(position) = names.iter().position(String::is_empty) {
        return Err(format!("column {} of the header has no name", position + 1));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_records_may_quote_commas_quotes_and_newlines() {
        let mut input: &[u8] = b"id,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n1,2,3,4\n";
        let record = read_record(&mut input).unwrap();
        assert_eq!(
            parse(&record).unwrap(),
            vec!["id", "a,b", "say \"hi\"", "two\nlines"]
        );
        assert_eq!(input, b"1,2,3,4\n");
        assert!(parse(b"a,,b\n").is_err());
        assert!(read_record(&mut &b""[..]).is_err());
    }
}
