//! The pgoutput logical decoding protocol, version 1, as `pg_logical_slot_peek_binary_changes`
//! returns it: one message per row of the function's result. Pure: bytes in, messages out.
//! Every malformed message is an error that says what was being read, never a panic.
//!
//! Reference: PostgreSQL's "Logical Replication Message Formats" (protocol.sgml).

use std::fmt;

/// A write-ahead log position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses PostgreSQL's `X/Y` text form.
    pub fn parse(text: &str) -> Option<Lsn> {
        let (high, low) = text.trim().split_once('/')?;
        let high = u64::from_str_radix(high, 16).ok()?;
        let low = u64::from_str_radix(low, 16).ok()?;
        (high <= u32::MAX as u64 && low <= u32::MAX as u64).then_some(Lsn(high << 32 | low))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// One column of a RELATION message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Part of the replica identity (the key, or every column under REPLICA IDENTITY FULL).
    pub is_key: bool,
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub oid: u32,
    /// Empty for pg_catalog, as the protocol sends it.
    pub namespace: String,
    pub name: String,
    /// pg_class.relreplident: d (default: the primary key), n (nothing), f (full), i (index).
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

/// One value of a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datum<'a> {
    Null,
    /// A TOASTed value the change left as it was: the mirror keeps its own.
    UnchangedToast,
    /// The value in its type's text output form.
    Text(&'a [u8]),
    /// The value in its type's binary send form (`binary 'true'`), as binary COPY carries it.
    Binary(&'a [u8]),
}

/// Which old tuple an UPDATE or DELETE carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldKind {
    /// Only the replica identity columns filled (the rest NULL).
    Key,
    /// The whole old row (REPLICA IDENTITY FULL).
    Row,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    Begin {
        /// The LSN of the commit record.
        final_lsn: Lsn,
        xid: u32,
    },
    Commit {
        commit_lsn: Lsn,
        /// Just past the commit record: where a consumer that applied it resumes.
        end_lsn: Lsn,
        /// Microseconds since 2000-01-01 UTC.
        commit_time: i64,
    },
    Relation(Relation),
    /// A non-builtin type's name; values are decoded by the mirror's codecs, so it is noted only.
    Type,
    /// A replication origin; nothing to do.
    Origin,
    /// `pg_logical_emit_message` output (only with `messages 'true'`).
    Logical,
    Insert {
        relation: u32,
        new: Vec<Datum<'a>>,
    },
    Update {
        relation: u32,
        old: Option<(OldKind, Vec<Datum<'a>>)>,
        new: Vec<Datum<'a>>,
    },
    Delete {
        relation: u32,
        old: (OldKind, Vec<Datum<'a>>),
    },
    Truncate {
        relations: Vec<u32>,
        cascade: bool,
        restart_identity: bool,
    },
}

/// What was wrong with a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed pgoutput {message} message: {reason}")]
pub struct ProtocolError {
    pub message: &'static str,
    pub reason: String,
}

struct Reader<'a> {
    bytes: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn fail(&self, reason: impl Into<String>) -> ProtocolError {
        ProtocolError {
            message: self.message,
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ProtocolError> {
        if self.bytes.len() < n {
            return Err(self.fail(format!("ends inside {what}")));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ProtocolError> {
        Ok(self.take(1, what)?[0])
    }

    fn i16(&mut self, what: &str) -> Result<i16, ProtocolError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ProtocolError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self, what: &str) -> Result<i32, ProtocolError> {
        Ok(self.u32(what)? as i32)
    }

    fn u64(&mut self, what: &str) -> Result<u64, ProtocolError> {
        let b = self.take(8, what)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(b);
        Ok(u64::from_be_bytes(array))
    }

    fn cstring(&mut self, what: &str) -> Result<String, ProtocolError> {
        let end = self
            .bytes
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.fail(format!("{what} has no terminating NUL")))?;
        let text = std::str::from_utf8(&self.bytes[..end])
            .map_err(|_| self.fail(format!("{what} is not UTF-8")))?
            .to_owned();
        self.bytes = &self.bytes[end + 1..];
        Ok(text)
    }

    fn tuple(&mut self) -> Result<Vec<Datum<'a>>, ProtocolError> {
        let count = self.i16("the column count")?;
        if count < 0 {
            return Err(self.fail(format!("negative column count {count}")));
        }
        let mut values = Vec::with_capacity(count as usize);
        for _ in 0..count {
            values.push(match self.u8("a column's kind")? {
                b'n' => Datum::Null,
                b'u' => Datum::UnchangedToast,
                kind @ (b't' | b'b') => {
                    let length = self.i32("a value's length")?;
                    let length = usize::try_from(length)
                        .map_err(|_| self.fail(format!("negative value length {length}")))?;
                    let bytes = self.take(length, "a value")?;
                    if kind == b't' {
                        Datum::Text(bytes)
                    } else {
                        Datum::Binary(bytes)
                    }
                }
                other => return Err(self.fail(format!("unknown column kind {:?}", other as char))),
            });
        }
        Ok(values)
    }

    fn old_kind(&mut self, tag: u8) -> Result<OldKind, ProtocolError> {
        match tag {
            b'K' => Ok(OldKind::Key),
            b'O' => Ok(OldKind::Row),
            other => Err(self.fail(format!("unknown tuple tag {:?}", other as char))),
        }
    }

    fn expect_new(&mut self) -> Result<(), ProtocolError> {
        match self.u8("the new tuple tag")? {
            b'N' => Ok(()),
            other => Err(self.fail(format!("expected the new tuple tag N, found {:?}", other as char))),
        }
    }

    fn finish(self) -> Result<(), ProtocolError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.fail(format!("{} bytes after its end", self.bytes.len())))
        }
    }
}

/// Decodes one message.
pub fn decode(bytes: &[u8]) -> Result<Message<'_>, ProtocolError> {
    let Some((&tag, body)) = bytes.split_first() else {
        return Err(ProtocolError {
            message: "empty",
            reason: "no bytes".into(),
        });
    };
    let name = match tag {
        b'B' => "BEGIN",
        b'C' => "COMMIT",
        b'R' => "RELATION",
        b'Y' => "TYPE",
        b'O' => "ORIGIN",
        b'M' => "MESSAGE",
        b'I' => "INSERT",
        b'U' => "UPDATE",
        b'D' => "DELETE",
        b'T' => "TRUNCATE",
        other => {
            return Err(ProtocolError {
                message: "unknown",
                reason: format!("unknown message type {:?}", other as char),
            })
        }
    };
    let mut r = Reader {
        bytes: body,
        message: name,
    };
    let message = match tag {
        b'B' => {
            let final_lsn = Lsn(r.u64("the final LSN")?);
            r.u64("the commit time")?;
            let xid = r.u32("the transaction id")?;
            Message::Begin { final_lsn, xid }
        }
        b'C' => {
            r.u8("the flags")?;
            let commit_lsn = Lsn(r.u64("the commit LSN")?);
            let end_lsn = Lsn(r.u64("the end LSN")?);
            let commit_time = r.u64("the commit time")? as i64;
            Message::Commit {
                commit_lsn,
                end_lsn,
                commit_time,
            }
        }
        b'R' => {
            let oid = r.u32("the relation oid")?;
            let namespace = r.cstring("the namespace")?;
            let name = r.cstring("the relation name")?;
            let replica_identity = r.u8("the replica identity")?;
            let count = r.i16("the column count")?;
            if count < 0 {
                return Err(r.fail(format!("negative column count {count}")));
            }
            let mut columns = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let flags = r.u8("a column's flags")?;
                let name = r.cstring("a column name")?;
                let type_oid = r.u32("a column's type")?;
                let typmod = r.i32("a column's type modifier")?;
                columns.push(RelationColumn {
                    is_key: flags & 1 == 1,
                    name,
                    type_oid,
                    typmod,
                });
            }
            Message::Relation(Relation {
                oid,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'Y' => {
            r.u32("the type oid")?;
            r.cstring("the namespace")?;
            r.cstring("the type name")?;
            Message::Type
        }
        b'O' => {
            r.u64("the origin LSN")?;
            r.cstring("the origin name")?;
            Message::Origin
        }
        b'M' => {
            r.u8("the flags")?;
            r.u64("the message LSN")?;
            r.cstring("the prefix")?;
            let length = r.u32("the content length")? as usize;
            r.take(length, "the content")?;
            Message::Logical
        }
        b'I' => {
            let relation = r.u32("the relation oid")?;
            r.expect_new()?;
            let new = r.tuple()?;
            Message::Insert { relation, new }
        }
        b'U' => {
            let relation = r.u32("the relation oid")?;
            let old = match r.u8("the tuple tag")? {
                b'N' => None,
                tag => {
                    let kind = r.old_kind(tag)?;
                    let old = r.tuple()?;
                    r.expect_new()?;
                    Some((kind, old))
                }
            };
            let new = r.tuple()?;
            Message::Update { relation, old, new }
        }
        b'D' => {
            let relation = r.u32("the relation oid")?;
            let tag = r.u8("the tuple tag")?;
            let kind = r.old_kind(tag)?;
            let old = r.tuple()?;
            Message::Delete {
                relation,
                old: (kind, old),
            }
        }
        _ => {
            let count = r.u32("the relation count")?;
            let options = r.u8("the options")?;
            let mut relations = Vec::new();
            for _ in 0..count {
                relations.push(r.u32("a relation oid")?);
            }
            Message::Truncate {
                relations,
                cascade: options & 1 != 0,
                restart_identity: options & 2 != 0,
            }
        }
    };
    r.finish()?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cstr(out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(text.as_bytes());
        out.push(0);
    }

    fn relation_message() -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend_from_slice(&16393u32.to_be_bytes());
        cstr(&mut m, "public");
        cstr(&mut m, "t \"q\"");
        m.push(b'd');
        m.extend_from_slice(&2i16.to_be_bytes());
        m.push(1);
        cstr(&mut m, "id");
        m.extend_from_slice(&23u32.to_be_bytes());
        m.extend_from_slice(&(-1i32).to_be_bytes());
        m.push(0);
        cstr(&mut m, "näme");
        m.extend_from_slice(&1043u32.to_be_bytes());
        m.extend_from_slice(&14i32.to_be_bytes());
        m
    }

    #[test]
    fn lsn_text_round_trips() {
        let lsn = Lsn::parse("16/B374D848").unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!(Lsn::parse("0/0"), Some(Lsn(0)));
        for bad in ["", "1", "x/1", "1/", "100000000/0"] {
            assert_eq!(Lsn::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn relation_columns_and_key_flags() {
        let bytes = relation_message();
        let Message::Relation(relation) = decode(&bytes).unwrap() else {
            panic!("not a relation")
        };
        assert_eq!(relation.name, "t \"q\"");
        assert_eq!(relation.columns.len(), 2);
        assert!(relation.columns[0].is_key && !relation.columns[1].is_key);
        assert_eq!(relation.columns[1].name, "näme");
        assert_eq!(relation.columns[1].typmod, 14);
    }

    #[test]
    fn update_with_old_key_and_unchanged_toast() {
        let mut m = vec![b'U'];
        m.extend_from_slice(&7u32.to_be_bytes());
        m.push(b'K');
        m.extend_from_slice(&2i16.to_be_bytes());
        m.push(b'b');
        m.extend_from_slice(&4i32.to_be_bytes());
        m.extend_from_slice(&2i32.to_be_bytes());
        m.push(b'n');
        m.push(b'N');
        m.extend_from_slice(&2i16.to_be_bytes());
        m.push(b'b');
        m.extend_from_slice(&4i32.to_be_bytes());
        m.extend_from_slice(&10i32.to_be_bytes());
        m.push(b'u');
        let Message::Update { relation, old, new } = decode(&m).unwrap() else {
            panic!("not an update")
        };
        assert_eq!(relation, 7);
        let (kind, old) = old.unwrap();
        assert_eq!(kind, OldKind::Key);
        assert_eq!(old, vec![Datum::Binary(&[0, 0, 0, 2]), Datum::Null]);
        assert_eq!(new, vec![Datum::Binary(&[0, 0, 0, 10]), Datum::UnchangedToast]);
    }

    #[test]
    fn begin_commit_truncate() {
        let mut b = vec![b'B'];
        b.extend_from_slice(&0x1_0000_0020u64.to_be_bytes());
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&733u32.to_be_bytes());
        assert_eq!(
            decode(&b).unwrap(),
            Message::Begin {
                final_lsn: Lsn(0x1_0000_0020),
                xid: 733
            }
        );
        let mut t = vec![b'T'];
        t.extend_from_slice(&2u32.to_be_bytes());
        t.push(3);
        t.extend_from_slice(&5u32.to_be_bytes());
        t.extend_from_slice(&6u32.to_be_bytes());
        assert_eq!(
            decode(&t).unwrap(),
            Message::Truncate {
                relations: vec![5, 6],
                cascade: true,
                restart_identity: true
            }
        );
    }

    #[test]
    fn every_truncation_of_a_message_is_an_error_not_a_panic() {
        let bytes = relation_message();
        for end in 0..bytes.len() {
            assert!(decode(&bytes[..end]).is_err(), "prefix of {end} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }
}
