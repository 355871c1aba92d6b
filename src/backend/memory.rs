//! Device memory the crate holds, counted where each GPU backend allocates: the bytes held now
//! and the most held at once since the last reset, so that a benchmark can say how much working
//! memory an op needs beyond its inputs and outputs (`trainkern bench`, column "work MB").
//! Buffers a caller lends (`Buffer::from_wgpu`, `from_cuda_slice`, `from_cuda_ptr`) are not
//! counted; allocations a driver makes for itself are not seen. The CPU keeps no ledger: its
//! ops' scratch is ordinary heap memory.

#![cfg_attr(
    not(any(feature = "wgpu", feature = "cuda", feature = "ptx-emu")),
    allow(dead_code)
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Bytes the crate holds on one device: now, and the most at once since
/// [`crate::Device::reset_peak_memory`] (or since the device was opened).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUse {
    pub live: u64,
    pub peak: u64,
}

/// One device's count.
#[derive(Default)]
pub(crate) struct Ledger {
    live: AtomicU64,
    peak: AtomicU64,
}

impl Ledger {
    /// Count `bytes` until the returned lease is dropped (with the allocation it rides on).
    pub(crate) fn lease(self: &Arc<Self>, bytes: u64) -> Lease {
        let live = self.live.fetch_add(bytes, Relaxed) + bytes;
        self.peak.fetch_max(live, Relaxed);
        Lease {
            ledger: self.clone(),
            bytes,
        }
    }

    pub(crate) fn usage(&self) -> MemoryUse {
        MemoryUse {
            live: self.live.load(Relaxed),
            peak: self.peak.load(Relaxed),
        }
    }

    /// Start a new peak from what is held now.
    pub(crate) fn reset_peak(&self) {
        self.peak.store(self.live.load(Relaxed), Relaxed);
    }
}

/// Bytes counted on a [`Ledger`] while an allocation lives; kept beside it.
pub(crate) struct Lease {
    ledger: Arc<Ledger>,
    bytes: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.ledger.live.fetch_sub(self.bytes, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_count_live_and_peak_bytes() {
        let ledger = Arc::new(Ledger::default());
        let a = ledger.lease(100);
        let b = ledger.lease(50);
        assert_eq!(
            ledger.usage(),
            MemoryUse {
                live: 150,
                peak: 150
            }
        );
        drop(a);
        assert_eq!(
            ledger.usage(),
            MemoryUse {
                live: 50,
                peak: 150
            }
        );
        ledger.reset_peak();
        let c = ledger.lease(10);
        drop(c);
        assert_eq!(ledger.usage(), MemoryUse { live: 50, peak: 60 });
        drop(b);
        assert_eq!(ledger.usage().live, 0);
    }
}
