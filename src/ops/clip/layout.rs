//! How a clip is cut into work: column tiles for the norm pass and, on wgpu, binding windows.
//!
//! A tile is a run of at most [`TILE`] columns inside one group (and, on wgpu, inside one column
//! window). The norm pass gives each (row, tile) one block, which writes one partial sum of
//! squares; the factor pass adds a group's partials in tile order, so the result does not depend
//! on scheduling. The table the kernels read is one u32 array:
//!
//! ```text
//! [start, count, group, 0] per tile | [first tile, tiles] per group | offsets o[0..=L]
//! ```

use crate::{Error, Result};

/// Columns per tile: 64 per thread of a 256-thread block.
pub(crate) const TILE: usize = 1 << 14;

/// One run of columns of one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tile {
    pub start: usize,
    pub count: usize,
    pub group: usize,
}

/// The tiles of a clip and where its u32 table puts each section.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub offsets: Vec<usize>,
    pub tiles: Vec<Tile>,
    /// Column windows `[a, b)`; tiles never cross one. One window `[0, d)` unless wgpu cuts.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    pub windows: Vec<(usize, usize)>,
}

impl Layout {
    /// Tiles of at most `max_tile` columns that break at every group offset and at every
    /// multiple of `window` columns.
    pub fn new(op: &'static str, offsets: &[usize], window: usize) -> Result<Layout> {
        let d = *offsets.last().unwrap_or(&0);
        if d > u32::MAX as usize {
            return Err(Error::LimitExceeded {
                what: format!("{op}: gradient columns d"),
                requested: d as u64,
                max: u64::from(u32::MAX),
            });
        }
        let window = window.max(1);
        let max_tile = TILE.min(window);
        let windows: Vec<(usize, usize)> = (0..d)
            .step_by(window)
            .map(|a| (a, (a + window).min(d)))
            .collect();
        let mut tiles = Vec::new();
        for (group, pair) in offsets.windows(2).enumerate() {
            let mut k = pair[0];
            while k < pair[1] {
                let window_end = (k / window + 1) * window;
                let end = pair[1].min(k + max_tile).min(window_end);
                tiles.push(Tile {
                    start: k,
                    count: end - k,
                    group,
                });
                k = end;
            }
        }
        Ok(Layout {
            offsets: offsets.to_vec(),
            tiles,
            windows,
        })
    }

    pub fn groups(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn dim(&self) -> usize {
        self.offsets[self.groups()]
    }

    /// Index of the first u32 of the per-group section.
    pub fn groups_at(&self) -> usize {
        4 * self.tiles.len()
    }

    /// Index of the first u32 of the offsets section.
    pub fn offsets_at(&self) -> usize {
        self.groups_at() + 2 * self.groups()
    }

    /// The tiles `[t0, t1)` that lie in column window `w`.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    pub fn tiles_in(&self, w: (usize, usize)) -> (usize, usize) {
        let t0 = self.tiles.partition_point(|t| t.start < w.0);
        let t1 = self.tiles.partition_point(|t| t.start < w.1);
        (t0, t1)
    }

    /// The table the kernels read (see the module docs).
    pub fn table(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.offsets_at() + self.offsets.len());
        for t in &self.tiles {
            out.extend([t.start as u32, t.count as u32, t.group as u32, 0]);
        }
        let mut first = 0usize;
        for g in 0..self.groups() {
            let n = self.tiles[first..]
                .iter()
                .take_while(|t| t.group == g)
                .count();
            out.extend([first as u32, n as u32]);
            first += n;
        }
        out.extend(self.offsets.iter().map(|&o| o as u32));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_break_at_groups_windows_and_the_tile_size() {
        let l = Layout::new("t", &[0, 5, 5 + 2 * TILE + 3], 1 << 30).unwrap();
        let starts: Vec<(usize, usize, usize)> = l
            .tiles
            .iter()
            .map(|t| (t.start, t.count, t.group))
            .collect();
        assert_eq!(
            starts,
            vec![
                (0, 5, 0),
                (5, TILE, 1),
                (5 + TILE, TILE, 1),
                (5 + 2 * TILE, 3, 1)
            ]
        );
        let table = l.table();
        assert_eq!(&table[l.groups_at()..l.offsets_at()], &[0, 1, 1, 3]);
        assert_eq!(&table[l.offsets_at()..], &[0, 5, 5 + 2 * TILE as u32 + 3]);

        let w = Layout::new("t", &[0, 10, 25], 8).unwrap();
        let cuts: Vec<(usize, usize)> = w.tiles.iter().map(|t| (t.start, t.count)).collect();
        assert_eq!(cuts, vec![(0, 8), (8, 2), (10, 6), (16, 8), (24, 1)]);
        assert_eq!(w.windows, vec![(0, 8), (8, 16), (16, 24), (24, 25)]);
        assert_eq!(w.tiles_in((8, 16)), (1, 3));
    }
}
