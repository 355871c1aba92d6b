//! Memory of an emulated launch: the global regions bound to it, and the address windows of
//! the generic address space.
//!
//! Global memory is `AtomicU32` words, so blocks running on several host threads share it
//! without data races in the emulator itself; a store narrower than a word merges into its word
//! with a compare-and-swap. Generic addresses: global allocations live at 2^40 and above;
//! `[SHARED_WINDOW, SHARED_WINDOW + 2^32)` is the block's shared memory (the static variables
//! from its start, the dynamic array from `DYNAMIC_SHARED_AT`) and
//! `[LOCAL_WINDOW, LOCAL_WINDOW + 2^32)` the current frame's local memory (what `cvta` maps to).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

pub const SHARED_WINDOW: u64 = 0x0000_0002_0000_0000;
pub const LOCAL_WINDOW: u64 = 0x0000_0004_0000_0000;
pub const WINDOW_SIZE: u64 = 1 << 32;
/// Where the dynamic shared memory (`.extern .shared`) starts within a block's shared memory:
/// far past any static `.shared` variables, so either kind of access out of its bounds is caught.
pub const DYNAMIC_SHARED_AT: u64 = 1 << 24;

/// One range of an allocation that a launch may touch (a kernel argument's buffer).
pub struct Region<'a> {
    /// First byte the kernel may touch.
    pub addr: u64,
    /// How many bytes from `addr`.
    pub bytes: u64,
    /// The allocation's words and the address of the first one.
    pub words: &'a [AtomicU32],
    pub words_addr: u64,
}

/// The global memory of one launch.
pub struct Global<'a> {
    regions: Vec<Region<'a>>,
    /// Serializes 64-bit atomics (two words each).
    wide: Mutex<()>,
}

impl<'a> Global<'a> {
    pub fn new(mut regions: Vec<Region<'a>>) -> Self {
        regions.sort_by_key(|r| r.addr);
        Global {
            regions,
            wide: Mutex::new(()),
        }
    }

    /// The word index and byte shift of `[addr, addr + size)`, which must lie inside one region
    /// and be aligned to `size`.
    fn locate(&self, addr: u64, size: u64) -> Result<(&Region<'a>, usize, u32), String> {
        if !addr.is_multiple_of(size) {
            return Err(format!("misaligned {size}-byte global access at {addr:#x}"));
        }
        let i = self.regions.partition_point(|r| r.addr <= addr);
        let r = i
            .checked_sub(1)
            .map(|i| &self.regions[i])
            .filter(|r| {
                addr.checked_add(size)
                    .is_some_and(|end| end <= r.addr + r.bytes)
            })
            .ok_or_else(|| {
                format!(
                    "out-of-bounds global access of {size} bytes at {addr:#x}; bound buffers: {}",
                    self.describe()
                )
            })?;
        let off = addr - r.words_addr;
        Ok((r, (off / 4) as usize, ((off % 4) * 8) as u32))
    }

    fn describe(&self) -> String {
        let v: Vec<String> = self
            .regions
            .iter()
            .map(|r| format!("[{:#x}, {:#x})", r.addr, r.addr + r.bytes))
            .collect();
        if v.is_empty() {
            "none".into()
        } else {
            v.join(", ")
        }
    }

    pub fn load(&self, addr: u64, size: u64) -> Result<u64, String> {
        let (r, w, shift) = self.locate(addr, size)?;
        Ok(match size {
            8 => {
                let lo = r.words[w].load(Ordering::Relaxed) as u64;
                let hi = r.words[w + 1].load(Ordering::Relaxed) as u64;
                lo | (hi << 32)
            }
            4 => r.words[w].load(Ordering::Relaxed) as u64,
            _ => {
                let mask = (1u64 << (size * 8)) - 1;
                ((r.words[w].load(Ordering::Relaxed) as u64) >> shift) & mask
            }
        })
    }

    pub fn store(&self, addr: u64, size: u64, v: u64) -> Result<(), String> {
        let (r, w, shift) = self.locate(addr, size)?;
        match size {
            8 => {
                r.words[w].store(v as u32, Ordering::Relaxed);
                r.words[w + 1].store((v >> 32) as u32, Ordering::Relaxed);
            }
            4 => r.words[w].store(v as u32, Ordering::Relaxed),
            _ => {
                let mask = (((1u64 << (size * 8)) - 1) << shift) as u32;
                let bits = ((v << shift) as u32) & mask;
                let _ = r.words[w].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                    Some((old & !mask) | bits)
                });
            }
        }
        Ok(())
    }

    /// Atomically replace the value at `addr` by `f(old)`; returns `old`.
    pub fn rmw(&self, addr: u64, size: u64, f: &dyn Fn(u64) -> u64) -> Result<u64, String> {
        let (r, w, _) = self.locate(addr, size)?;
        if size == 4 {
            let old = r.words[w]
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                    Some(f(old as u64) as u32)
                })
                .unwrap_or_else(|x| x);
            return Ok(old as u64);
        }
        let _g = self.wide.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.load(addr, 8)?;
        self.store(addr, 8, f(old))?;
        Ok(old)
    }
}
