//! Table B-trees built bottom-up (fileformat2 §1.6): cells packed into leaf pages in key
//! order, overflow chains for large records, interior levels over the leaves, and the
//! freelist for pages a merge left behind. Pages are only appended, except each tree's
//! root, which goes to the page SQLite reserved for it in `sqlite_schema`.

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use super::record::{get_varint, put_varint, varint_len};

const LEAF: u8 = 0x0d;
const INTERIOR: u8 = 0x05;
const LEAF_HEADER: usize = 8;
const INTERIOR_HEADER: usize = 12;
/// Appended pages are written in runs of this many bytes.
const WRITE_BUFFER: usize = 4 << 20;
/// SQLite's lock bytes start here (fileformat2 §1.3): the page that holds them is never
/// part of any tree or the freelist, so page numbers go past it.
const LOCK_BYTE_OFFSET: usize = 1 << 30;
/// The largest page number SQLite accepts.
const LAST_PAGE: u32 = 0xFFFF_FFFE;

/// The file being written: a SQLite database whose first `pages` pages SQLite wrote.
pub struct PageFile {
    file: File,
    pub page_size: usize,
    /// Pages in the file, counting those still in `buffer`.
    pub pages: u32,
    buffer: Vec<u8>,
    /// Pages no tree uses any more; they become the freelist.
    pub freed: Vec<u32>,
    lock_page: u32,
}

impl PageFile {
    pub fn new(file: File, page_size: usize, pages: u32) -> Self {
        PageFile {
            file,
            page_size,
            pages,
            buffer: Vec::with_capacity(WRITE_BUFFER),
            freed: Vec::new(),
            lock_page: (LOCK_BYTE_OFFSET / page_size) as u32 + 1,
        }
    }

    /// The number the page appended after page `number` gets.
    pub fn page_after(&self, number: u32) -> u32 {
        // Saturating: `append` refuses to go past the last page before a number is used.
        if number.saturating_add(1) == self.lock_page {
            number.saturating_add(2)
        } else {
            number.saturating_add(1)
        }
    }

    /// Appends one page and returns its number.
    pub fn append(&mut self, page: &[u8]) -> io::Result<u32> {
        debug_assert_eq!(page.len(), self.page_size);
        if self.pages >= LAST_PAGE - 1 {
            return Err(io::Error::other(format!(
                "the file would pass SQLite's largest page number, {LAST_PAGE}"
            )));
        }
        // The page `page_after` skips gets zeros, never read: SQLite leaves it unwritten.
        let number = self.page_after(self.pages);
        while self.pages + 1 < number {
            self.buffer.resize(self.buffer.len() + self.page_size, 0);
            self.pages += 1;
        }
        self.buffer.extend_from_slice(page);
        self.pages += 1;
        if self.buffer.len() >= WRITE_BUFFER {
            self.flush()?;
        }
        Ok(self.pages)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let first = self.pages as usize - self.buffer.len() / self.page_size;
        self.file
            .write_all_at(&self.buffer, (first * self.page_size) as u64)?;
        self.buffer.clear();
        Ok(())
    }

    /// Writes page `number`, which is already part of the file.
    pub fn write_page(&mut self, number: u32, page: &[u8]) -> io::Result<()> {
        self.flush()?;
        self.file.write_all_at(page, self.offset(number))
    }

    pub fn read_page(&mut self, number: u32, page: &mut [u8]) -> io::Result<()> {
        self.flush()?;
        self.file.read_exact_at(page, self.offset(number))
    }

    fn offset(&self, number: u32) -> u64 {
        (number as u64 - 1) * self.page_size as u64
    }

    pub fn into_file(mut self) -> io::Result<File> {
        self.flush()?;
        self.file.flush()?;
        Ok(self.file)
    }

    /// Writes the freed pages as freelist trunks; returns (first trunk, total pages).
    pub fn write_freelist(&mut self) -> io::Result<(u32, u32)> {
        let freed = std::mem::take(&mut self.freed);
        // fileformat2 §1.5: readers before 3.6.0 mishandle more than U/4-8 leaves a trunk.
        let per_trunk = self.page_size / 4 - 8;
        let mut next_trunk = 0u32;
        let mut page = vec![0u8; self.page_size];
        // Built from the end so each trunk can name the next one.
        for group in freed.chunks(per_trunk + 1).rev() {
            let (trunk, leaves) = (group[0], &group[1..]);
            page.fill(0);
            page[0..4].copy_from_slice(&next_trunk.to_be_bytes());
            page[4..8].copy_from_slice(&(leaves.len() as u32).to_be_bytes());
            for (index, leaf) in leaves.iter().enumerate() {
                page[8 + index * 4..12 + index * 4].copy_from_slice(&leaf.to_be_bytes());
            }
            self.write_page(trunk, &page)?;
            next_trunk = trunk;
        }
        Ok((next_trunk, freed.len() as u32))
    }
}

/// How much of a payload of `size` bytes a table leaf cell keeps on its page (§1.6).
pub fn local_payload(size: usize, usable: usize) -> usize {
    let max_local = usable - 35;
    if size <= max_local {
        return size;
    }
    let min_local = (usable - 12) * 32 / 255 - 23;
    let k = min_local + (size - min_local) % (usable - 4);
    if k <= max_local {
        k
    } else {
        min_local
    }
}

/// Builds the leaf cell for `record` under `key` into `cell`, writing its overflow pages.
pub fn build_cell(file: &mut PageFile, key: i64, record: &[u8], cell: &mut Vec<u8>) -> io::Result<()> {
    let usable = file.page_size;
    cell.clear();
    put_varint(cell, record.len() as u64);
    put_varint(cell, key as u64);
    let local = local_payload(record.len(), usable);
    cell.extend_from_slice(&record[..local]);
    if local == record.len() {
        return Ok(());
    }
    let per_page = usable - 4;
    let rest = &record[local..];
    let mut number = file.page_after(file.pages);
    cell.extend_from_slice(&number.to_be_bytes());
    let mut page = vec![0u8; usable];
    let chunks = rest.len().div_ceil(per_page);
    for (index, chunk) in rest.chunks(per_page).enumerate() {
        let next = if index + 1 == chunks {
            0
        } else {
            file.page_after(number)
        };
        page[..4].copy_from_slice(&next.to_be_bytes());
        page[4..4 + chunk.len()].copy_from_slice(chunk);
        page[4 + chunk.len()..].fill(0);
        let appended = file.append(&page)?;
        debug_assert_eq!(appended, number);
        number = next;
    }
    Ok(())
}

/// The length of the cell at the start of `bytes` on a table leaf page, and its key.
fn leaf_cell(bytes: &[u8], usable: usize) -> Option<(usize, i64)> {
    let (payload, payload_len) = get_varint(bytes)?;
    let (key, key_len) = get_varint(bytes.get(payload_len..)?)?;
    let local = local_payload(usize::try_from(payload).ok()?, usable);
    let overflow = if local < payload as usize { 4 } else { 0 };
    Some((payload_len + key_len + local + overflow, key as i64))
}

/// One leaf page of a tree: where it is (or its bytes, until it is written) and its keys.
pub struct Leaf {
    pub page: LeafPage,
    pub first_key: i64,
    pub last_key: i64,
}

pub enum LeafPage {
    Written(u32),
    /// A run's first leaf stays in memory, so a table of one leaf can be written straight
    /// to its root page.
    Held(Box<[u8]>),
}

/// A sequence of leaves with strictly increasing keys, still open at its last page.
pub struct Run {
    pub leaves: Vec<Leaf>,
    page: Vec<u8>,
    cells: usize,
    content_start: usize,
    first_key: i64,
    pub last_key: Option<i64>,
}

impl Run {
    pub fn new(page_size: usize) -> Self {
        Run {
            leaves: Vec::new(),
            page: vec![0u8; page_size],
            cells: 0,
            content_start: page_size,
            first_key: 0,
            last_key: None,
        }
    }

    pub fn first_key(&self) -> Option<i64> {
        self.leaves
            .first()
            .map(|l| l.first_key)
            .or(self.last_key.map(|_| self.first_key))
    }

    /// Adds a cell whose key is greater than every key in the run.
    pub fn push(&mut self, file: &mut PageFile, key: i64, cell: &[u8]) -> io::Result<()> {
        debug_assert!(self.last_key.is_none_or(|last| key > last));
        let pointer = LEAF_HEADER + self.cells * 2;
        if pointer + 2 + cell.len() > self.content_start {
            self.close_page(file)?;
        }
        if self.cells == 0 {
            self.first_key = key;
        }
        self.content_start -= cell.len();
        self.page[self.content_start..self.content_start + cell.len()].copy_from_slice(cell);
        let pointer = LEAF_HEADER + self.cells * 2;
        self.page[pointer..pointer + 2].copy_from_slice(&(self.content_start as u16).to_be_bytes());
        self.cells += 1;
        self.last_key = Some(key);
        Ok(())
    }

    fn close_page(&mut self, file: &mut PageFile) -> io::Result<()> {
        let Some(last_key) = self.last_key.filter(|_| self.cells > 0) else {
            return Ok(());
        };
        let page_size = self.page.len();
        self.page[0] = LEAF;
        self.page[1..3].fill(0);
        self.page[3..5].copy_from_slice(&(self.cells as u16).to_be_bytes());
        // A content area starting at 65536 is written as 0.
        self.page[5..7].copy_from_slice(&(self.content_start as u16).to_be_bytes());
        self.page[7] = 0;
        // The unused gap holds zeros, as SQLite's secure_delete-free pages need not, but
        // zeros keep the file's bytes a function of its rows.
        let gap_start = LEAF_HEADER + self.cells * 2;
        self.page[gap_start..self.content_start].fill(0);
        let page = if self.leaves.is_empty() {
            LeafPage::Held(self.page.clone().into_boxed_slice())
        } else {
            LeafPage::Written(file.append(&self.page)?)
        };
        self.leaves.push(Leaf {
            page,
            first_key: self.first_key,
            last_key,
        });
        self.cells = 0;
        self.content_start = page_size;
        Ok(())
    }

    /// Closes the open page; the run's leaves are then final.
    pub fn finish(mut self, file: &mut PageFile) -> io::Result<Vec<Leaf>> {
        self.close_page(file)?;
        Ok(self.leaves)
    }
}

/// Why a tree could not be built.
#[derive(Debug)]
pub enum TreeError {
    Io(io::Error),
    /// Two rows with the same key (an INTEGER PRIMARY KEY value).
    DuplicateKey(i64),
    /// A page read back does not parse: the file changed under the writer.
    Corrupt(u32),
}

impl From<io::Error> for TreeError {
    fn from(e: io::Error) -> Self {
        TreeError::Io(e)
    }
}

/// Builds one table's tree from its runs and writes its root to `root`.
pub fn build_tree(file: &mut PageFile, runs: Vec<Vec<Leaf>>, root: u32) -> Result<(), TreeError> {
    let leaves = order_leaves(file, runs)?;
    match leaves.len() {
        // An empty table keeps the empty leaf SQLite wrote at its root.
        0 => return Ok(()),
        1 => {
            let page = leaf_bytes(file, &leaves[0].page)?;
            if let LeafPage::Written(number) = leaves[0].page {
                file.freed.push(number);
            }
            return Ok(file.write_page(root, &page)?);
        }
        _ => {}
    }
    let mut level: Vec<(u32, i64)> = Vec::with_capacity(leaves.len());
    for leaf in leaves {
        let number = match leaf.page {
            LeafPage::Written(number) => number,
            LeafPage::Held(bytes) => file.append(&bytes)?,
        };
        level.push((number, leaf.last_key));
    }
    loop {
        let groups = interior_groups(&level, file.page_size);
        if groups.len() == 1 {
            let page = interior_page(&level, file.page_size);
            return Ok(file.write_page(root, &page)?);
        }
        let mut next = Vec::with_capacity(groups.len());
        for group in groups {
            let children = &level[group];
            let page = interior_page(children, file.page_size);
            next.push((file.append(&page)?, children[children.len() - 1].1));
        }
        level = next;
    }
}

fn leaf_bytes(file: &mut PageFile, page: &LeafPage) -> io::Result<Box<[u8]>> {
    Ok(match page {
        LeafPage::Held(bytes) => bytes.clone(),
        LeafPage::Written(number) => {
            let mut bytes = vec![0u8; file.page_size].into_boxed_slice();
            file.read_page(*number, &mut bytes)?;
            bytes
        }
    })
}

/// Splits children into interior pages, each as full as it can be, with at least two
/// children on every page (an interior page needs one cell besides its right pointer).
fn interior_groups(children: &[(u32, i64)], page_size: usize) -> Vec<std::ops::Range<usize>> {
    let room = page_size - INTERIOR_HEADER;
    let mut groups = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (index, (_, key)) in children.iter().enumerate() {
        // Every child but a page's last takes a cell (pointer + 4-byte page + key varint).
        let size = 2 + 4 + varint_len(*key as u64);
        if used + size > room && index > start + 1 {
            groups.push(start..index);
            start = index;
            used = 0;
        }
        used += size;
    }
    groups.push(start..children.len());
    if groups.len() > 1 && groups[groups.len() - 1].len() < 2 {
        let last = groups.len() - 1;
        groups[last - 1].end -= 1;
        groups[last].start -= 1;
    }
    groups
}

fn interior_page(children: &[(u32, i64)], page_size: usize) -> Vec<u8> {
    let mut page = vec![0u8; page_size];
    let (cells, right) = children.split_at(children.len() - 1);
    let mut content_start = page_size;
    let mut cell = Vec::with_capacity(13);
    for (index, (child, key)) in cells.iter().enumerate() {
        cell.clear();
        cell.extend_from_slice(&child.to_be_bytes());
        put_varint(&mut cell, *key as u64);
        content_start -= cell.len();
        page[content_start..content_start + cell.len()].copy_from_slice(&cell);
        let pointer = INTERIOR_HEADER + index * 2;
        page[pointer..pointer + 2].copy_from_slice(&(content_start as u16).to_be_bytes());
    }
    page[0] = INTERIOR;
    page[3..5].copy_from_slice(&(cells.len() as u16).to_be_bytes());
    page[5..7].copy_from_slice(&(content_start as u16).to_be_bytes());
    page[8..12].copy_from_slice(&right[0].0.to_be_bytes());
    page
}

/// The leaves of all runs in key order: runs whose key ranges do not overlap are laid
/// end to end; overlapping ones are merged cell by cell into new leaves.
fn order_leaves(file: &mut PageFile, mut runs: Vec<Vec<Leaf>>) -> Result<Vec<Leaf>, TreeError> {
    runs.retain(|run| !run.is_empty());
    runs.sort_by_key(|run| run[0].first_key);
    let mut ordered = Vec::new();
    let mut cluster: Vec<Vec<Leaf>> = Vec::new();
    let mut cluster_end = i64::MIN;
    for run in runs {
        let (first, last) = (run[0].first_key, run[run.len() - 1].last_key);
        if !cluster.is_empty() && first <= cluster_end {
            cluster_end = cluster_end.max(last);
            cluster.push(run);
            continue;
        }
        ordered.extend(merge(file, std::mem::take(&mut cluster))?);
        cluster.push(run);
        cluster_end = last;
    }
    ordered.extend(merge(file, cluster)?);
    Ok(ordered)
}

/// Reads a run's cells back in key order, one leaf at a time.
struct Cursor {
    leaves: std::vec::IntoIter<Leaf>,
    page: Box<[u8]>,
    cells: usize,
    next_cell: usize,
    /// The current cell's key and byte range on `page`.
    current: Option<(i64, std::ops::Range<usize>)>,
}

impl Cursor {
    fn advance(&mut self, file: &mut PageFile) -> Result<(), TreeError> {
        while self.next_cell >= self.cells {
            let Some(leaf) = self.leaves.next() else {
                self.current = None;
                return Ok(());
            };
            self.page = leaf_bytes(file, &leaf.page)?;
            if let LeafPage::Written(number) = leaf.page {
                file.freed.push(number);
            }
            self.cells = u16::from_be_bytes([self.page[3], self.page[4]]) as usize;
            self.next_cell = 0;
        }
        let pointer = LEAF_HEADER + self.next_cell * 2;
        let start = u16::from_be_bytes([self.page[pointer], self.page[pointer + 1]]) as usize;
        let (len, key) = self
            .page
            .get(start..)
            .and_then(|bytes| leaf_cell(bytes, self.page.len()))
            .filter(|(len, _)| start + len <= self.page.len())
            .ok_or(TreeError::Corrupt(0))?;
        self.current = Some((key, start..start + len));
        self.next_cell += 1;
        Ok(())
    }
}

fn merge(file: &mut PageFile, cluster: Vec<Vec<Leaf>>) -> Result<Vec<Leaf>, TreeError> {
    if cluster.len() <= 1 {
        return Ok(cluster.into_iter().flatten().collect());
    }
    let mut cursors = Vec::with_capacity(cluster.len());
    let mut heap = BinaryHeap::new();
    for leaves in cluster {
        let mut cursor = Cursor {
            leaves: leaves.into_iter(),
            page: Box::new([]),
            cells: 0,
            next_cell: 0,
            current: None,
        };
        cursor.advance(file)?;
        if let Some((key, _)) = &cursor.current {
            heap.push(std::cmp::Reverse((*key, cursors.len())));
        }
        cursors.push(cursor);
    }
    let mut out = Run::new(file.page_size);
    while let Some(std::cmp::Reverse((key, index))) = heap.pop() {
        if out.last_key == Some(key) {
            return Err(TreeError::DuplicateKey(key));
        }
        let cursor = &mut cursors[index];
        if let Some((_, range)) = &cursor.current {
            let cell = cursor.page[range.clone()].to_vec();
            out.push(file, key, &cell)?;
        }
        cursor.advance(file)?;
        if let Some((next, _)) = &cursor.current {
            heap.push(std::cmp::Reverse((*next, index)));
        }
    }
    Ok(out.finish(file)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_payload_matches_the_format_examples() {
        let usable = 4096;
        assert_eq!(local_payload(4061, usable), 4061);
        // M = (4084*32/255) - 23 = 489; K = M + (P-M) % 4092 = 4062 > X = 4061, so M.
        assert_eq!(local_payload(4062, usable), 489);
        // K = 489 + (5000-489) % 4092 = 908 <= X: K bytes stay local.
        assert_eq!(local_payload(5000, usable), 908);
        assert_eq!(local_payload(100_000, usable), {
            let k = 489 + (100_000 - 489) % 4092;
            if k <= 4061 {
                k
            } else {
                489
            }
        });
    }

    #[test]
    fn interior_groups_never_leave_a_page_with_one_child() {
        for count in 2..2000 {
            let children: Vec<(u32, i64)> = (0..count).map(|i| (i as u32 + 2, i as i64)).collect();
            let groups = interior_groups(&children, 512);
            assert!(groups.iter().all(|g| g.len() >= 2), "{count}: {groups:?}");
            assert_eq!(groups.iter().map(|g| g.len()).sum::<usize>(), count as usize);
        }
    }
}
