//! The PTX emulator backend (`Device::PtxEmu`): host memory laid out as device memory, and
//! launches of the embedded PTX through the interpreter in `crate::ptx`.
//!
//! Allocations get addresses from 2^40 up, 256-byte aligned with a gap between them, so a
//! pointer is meaningful to the kernel exactly as on a GPU; a launch maps only the buffers
//! passed to it, each over exactly its own bytes, and anything else a kernel touches is an error.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::memory::{Lease, Ledger};
use crate::buffer::Element;
use crate::ptx::{self, Dims, Global, Region};
use crate::{Error, Result};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static NEXT_ADDR: AtomicU64 = AtomicU64::new(1 << 40);

/// An emulated device. Cheap to clone.
#[derive(Clone)]
pub struct EmuDevice(Arc<Inner>);

struct Inner {
    id: u64,
    modules: Mutex<HashMap<&'static str, Arc<ptx::Module>>>,
    allocations: Mutex<BTreeMap<u64, Weak<Allocation>>>,
    ledger: Arc<Ledger>,
}

/// Emulated device memory.
pub(crate) struct Allocation {
    base: u64,
    bytes: usize,
    words: Vec<AtomicU32>,
}

/// Device memory of an emulator [`crate::Buffer`].
pub struct EmuStorage {
    pub(crate) dev: EmuDevice,
    alloc: Arc<Allocation>,
    /// The allocation's bytes on the device's ledger.
    _lease: Lease,
}

impl Default for EmuDevice {
    fn default() -> Self {
        Self::new()
    }
}

impl EmuDevice {
    pub fn new() -> Self {
        EmuDevice(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            modules: Mutex::new(HashMap::new()),
            allocations: Mutex::new(BTreeMap::new()),
            ledger: Arc::default(),
        }))
    }

    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "ptx-emu (the PTX of kernels/ interpreted on {} CPU threads)",
            rayon::current_num_threads()
        )
    }

    pub(crate) fn zeros(&self, bytes: usize) -> Result<EmuStorage> {
        let words = bytes.div_ceil(4).max(1);
        let span = (words as u64 * 4).div_ceil(256) * 256 + 256;
        let base = NEXT_ADDR.fetch_add(span, Ordering::Relaxed);
        let alloc = Arc::new(Allocation {
            base,
            bytes,
            words: (0..words).map(|_| AtomicU32::new(0)).collect(),
        });
        let mut reg = lock(&self.0.allocations)?;
        reg.retain(|_, w| w.strong_count() > 0);
        reg.insert(base, Arc::downgrade(&alloc));
        Ok(EmuStorage {
            dev: self.clone(),
            alloc,
            _lease: self.0.ledger.lease(words as u64 * 4),
        })
    }

    pub(crate) fn ledger(&self) -> &Ledger {
        &self.0.ledger
    }

    pub(crate) fn upload<T: Element>(&self, data: &[T]) -> Result<EmuStorage> {
        let s = self.zeros(std::mem::size_of_val(data))?;
        s.write_bytes(0, bytemuck::cast_slice(data));
        Ok(s)
    }

    pub(crate) fn copy(&self, src: &EmuStorage, dst: &EmuStorage, bytes: usize) -> Result<()> {
        let data = src.read_bytes(bytes);
        dst.write_bytes(0, &data);
        Ok(())
    }

    fn module(&self, name: &'static str) -> Result<Arc<ptx::Module>> {
        let mut cache = lock(&self.0.modules)?;
        if let Some(m) = cache.get(name) {
            return Ok(m.clone());
        }
        let src = crate::sources::ptx(name).ok_or_else(|| Error::Unsupported {
            op: name,
            backend: "ptx-emu",
            what: "no PTX module of that name".into(),
        })?;
        let m = Arc::new(ptx::parse(&src).map_err(|e| Error::PtxParse {
            module: name.to_string(),
            at: crate::sources::ptx_origin(name, e.line),
            what: e.what,
        })?);
        cache.insert(name, m.clone());
        Ok(m)
    }

    /// Run `entry` of `module` over `grid` blocks of `block` threads. Pointer arguments map
    /// exactly the bytes they name.
    pub(crate) fn launch(
        &self,
        module: &'static str,
        entry: &str,
        dims: Dims,
        args: &[super::ptx::KernelArg],
    ) -> Result<()> {
        use super::ptx::KernelArg;
        let m = self.module(module)?;
        let mut keep = Vec::new();
        let mut regions_of = Vec::new();
        let mut emu_args = Vec::new();
        for a in args {
            emu_args.push(match *a {
                KernelArg::Ptr { addr, bytes } => {
                    let alloc = self.find(addr)?;
                    regions_of.push((addr, bytes, keep.len()));
                    keep.push(alloc);
                    ptx::Arg::Ptr(addr)
                }
                KernelArg::Shifted { addr, bytes, shift } => {
                    let alloc = self.find(addr)?;
                    regions_of.push((addr, bytes, keep.len()));
                    keep.push(alloc);
                    ptx::Arg::Ptr(addr.wrapping_sub(shift))
                }
                KernelArg::U64(v) => ptx::Arg::U64(v),
                KernelArg::U32(v) => ptx::Arg::U32(v),
                KernelArg::F32(v) => ptx::Arg::F32(v),
            });
        }
        let regions = regions_of
            .iter()
            .map(|&(addr, bytes, k)| Region {
                addr,
                bytes,
                words: &keep[k].words,
                words_addr: keep[k].base,
            })
            .collect();
        let (idx, params) =
            ptx::param_buffer(&m, entry, &emu_args).map_err(|what| Error::InvalidArgument {
                op: "ptx-emu launch",
                what: format!("{module}.ptx: {what}"),
            })?;
        let global = Global::new(regions);
        ptx::exec::run(&m, idx, dims, &params, &global).map_err(|f| Error::PtxExec {
            kernel: format!("{module}.ptx:{entry}"),
            at: crate::sources::ptx_origin(module, f.line),
            block: f.block,
            thread: f.thread,
            what: f.what,
        })
    }

    /// The live allocation containing `addr`.
    fn find(&self, addr: u64) -> Result<Arc<Allocation>> {
        let reg = lock(&self.0.allocations)?;
        reg.range(..=addr)
            .next_back()
            .and_then(|(_, w)| w.upgrade())
            .filter(|a| addr <= a.base + a.bytes as u64)
            .ok_or_else(|| Error::InvalidArgument {
                op: "ptx-emu launch",
                what: format!("pointer {addr:#x} is not in a live allocation of this device"),
            })
    }
}

impl EmuStorage {
    /// The device address of byte 0.
    pub(crate) fn addr(&self) -> u64 {
        self.alloc.base
    }

    fn read_bytes(&self, bytes: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes + 4);
        for w in &self.alloc.words[..bytes.div_ceil(4)] {
            out.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        out.truncate(bytes);
        out
    }

    fn write_bytes(&self, at: usize, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let p = at + i;
            let shift = (p % 4) * 8;
            let w = &self.alloc.words[p / 4];
            let old = w.load(Ordering::Relaxed);
            w.store(
                (old & !(0xff << shift)) | ((*b as u32) << shift),
                Ordering::Relaxed,
            );
        }
    }

    /// Zeroes the first `bytes` (whole words around them).
    pub(crate) fn clear(&self, bytes: usize) {
        for w in &self.alloc.words[..bytes.div_ceil(4)] {
            w.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn download<T: Element>(&self, len: usize) -> Result<Vec<T>> {
        Ok(bytemuck::pod_collect_to_vec(
            &self.read_bytes(len * T::DTYPE.size()),
        ))
    }

    pub(crate) fn write<T: Element>(&mut self, data: &[T]) -> Result<()> {
        self.write_bytes(0, bytemuck::cast_slice(data));
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock().map_err(|_| Error::InvalidArgument {
        op: "ptx-emu",
        what: "a lock was poisoned by an earlier panic".into(),
    })
}
