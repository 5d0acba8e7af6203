//! Which streamed transactions the initial copy already holds.
//!
//! The slot is created before the copy's snapshot, so transactions that committed in
//! between are both in the copy and in the stream. A transaction is in the copy exactly
//! when its xid is visible in the snapshot (ElectricSQL's rule; measured in
//! notes/replication.md §5): such transactions are skipped, every other one is applied.

/// `pg_current_snapshot()` of the initial copy: 64-bit xids (xid8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    xmin: u64,
    xmax: u64,
    in_progress: Vec<u64>,
}

impl Snapshot {
    /// Parses `xmin:xmax:xip,xip,...` (the list may be empty).
    pub fn parse(text: &str) -> Option<Snapshot> {
        let mut parts = text.trim().splitn(3, ':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let list = parts.next()?;
        let in_progress = if list.is_empty() {
            Vec::new()
        } else {
            list.split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<Vec<u64>>>()?
        };
        (xmin <= xmax).then_some(Snapshot {
            xmin,
            xmax,
            in_progress,
        })
    }

    /// Whether the transaction with this 32-bit xid (as pgoutput's BEGIN carries it) had
    /// committed when the snapshot was taken. The xid is widened to the 64-bit xid nearest
    /// to `xmax`: PostgreSQL keeps every live xid within 2^31 of the next one.
    pub fn sees(&self, xid: u32) -> bool {
        let xid = self.widen(xid);
        if xid < self.xmin {
            return true;
        }
        xid < self.xmax && !self.in_progress.contains(&xid)
    }

    /// The 64-bit xid within 2^31 of xmax (either side) whose low half is `xid`; one that
    /// would lie before xid 0 cannot have committed before the snapshot, so it sorts last.
    fn widen(&self, xid: u32) -> u64 {
        let distance = xid.wrapping_sub(self.xmax as u32) as i32;
        self.xmax.checked_add_signed(distance as i64).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::Snapshot;

    #[test]
    fn visibility_follows_xmin_xmax_and_the_running_list() {
        let snapshot = Snapshot::parse("100:105:100,103").unwrap();
        assert!(snapshot.sees(99));
        assert!(!snapshot.sees(100), "running when the snapshot was taken");
        assert!(snapshot.sees(101));
        assert!(!snapshot.sees(103));
        assert!(snapshot.sees(104));
        assert!(!snapshot.sees(105), "started after the snapshot");
        assert!(!snapshot.sees(4_000_000_000));
        assert_eq!(
            Snapshot::parse("7:7:").unwrap(),
            Snapshot {
                xmin: 7,
                xmax: 7,
                in_progress: vec![]
            }
        );
    }

    #[test]
    fn xids_widen_across_an_epoch_boundary() {
        // xmax just past the wrap: epoch 1, low half 5.
        let base = 1u64 << 32;
        let snapshot = Snapshot::parse(&format!("{}:{}:", base - 10, base + 5)).unwrap();
        assert!(snapshot.sees(u32::MAX - 20), "epoch 0, before xmin");
        assert!(
            snapshot.sees(u32::MAX - 3),
            "epoch 0, between xmin and xmax, not running"
        );
        assert!(!snapshot.sees(6), "epoch 1, after xmax");
        assert!(snapshot.sees(4));
    }

    #[test]
    fn xids_just_after_a_wrap_are_not_taken_for_old_ones() {
        // xmax just below the wrap to epoch 2: a transaction started after the snapshot has
        // xid8 0x2_0000_0010, sent as 0x10.
        let xmax = 0x1_FFFF_FF00u64;
        let snapshot = Snapshot::parse(&format!("{}:{xmax}:", xmax - 100)).unwrap();
        assert!(!snapshot.sees(0x10), "started after the snapshot");
        assert!(snapshot.sees(0xFFFF_FE00), "long committed, same epoch");
        // Near the bottom of the xid space nothing underflows.
        let low = Snapshot::parse("3:5:").unwrap();
        assert!(!low.sees(u32::MAX));
        assert!(low.sees(4));
    }

    #[test]
    fn malformed_snapshots_are_refused() {
        for bad in ["", "1", "1:2", "2:1:", "a:b:", "1:2:x"] {
            assert_eq!(Snapshot::parse(bad), None, "{bad:?}");
        }
    }
}
