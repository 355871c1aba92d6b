//! What the two backends that run `kernels/*.ptx` share: the argument list of a launch and the
//! 1D launch itself, so an op's PTX glue is written once and runs on a GPU through cudarc or on
//! the CPU through the emulator.

use crate::buffer::{Element, Storage};
use crate::{Error, Result};

/// Threads per block in every launch of the crate.
pub const BLOCK_SIZE: u32 = 256;

/// One kernel argument, in the order of the entry's `.param` list.
#[derive(Clone, Copy, Debug)]
// Only the emulator reads `bytes` (CUDA does not bound-check), and without a PTX backend
// nothing reads any field.
#[cfg_attr(not(feature = "ptx-emu"), allow(dead_code))]
pub(crate) enum KernelArg {
    /// A buffer: its device address and the bytes the kernel may touch from there.
    Ptr {
        addr: u64,
        bytes: u64,
    },
    U64(u64),
    U32(u32),
    F32(f32),
}

/// A device that runs the PTX of `kernels/`.
pub(crate) enum PtxDevice {
    #[cfg(feature = "cuda")]
    Cuda(super::cuda::CudaDevice),
    #[cfg(feature = "ptx-emu")]
    Emu(super::ptx_emu::EmuDevice),
}

impl PtxDevice {
    /// Launch `threads` threads of `module.ptx:entry` in 1D blocks of [`BLOCK_SIZE`].
    ///
    /// # Safety
    /// On CUDA the arguments must match the entry's parameters and the kernel must stay inside
    /// the buffers they name for every thread index below `threads` (the emulator checks both).
    pub(crate) unsafe fn launch_1d(
        &self,
        module: &'static str,
        entry: &'static str,
        op: &str,
        args: &[KernelArg],
        threads: u64,
    ) -> Result<()> {
        let blocks = threads.div_ceil(u64::from(BLOCK_SIZE)).max(1);
        let max = (1u64 << 31) - 1;
        if blocks > max {
            return Err(Error::LimitExceeded {
                what: format!("{op}: grid blocks"),
                requested: blocks,
                max,
            });
        }
        let _ = (module, entry, args);
        match *self {
            #[cfg(feature = "cuda")]
            // SAFETY: forwarded from the caller.
            PtxDevice::Cuda(ref d) => unsafe {
                d.launch(module, entry, blocks as u32, BLOCK_SIZE, args)
            },
            #[cfg(feature = "ptx-emu")]
            PtxDevice::Emu(ref d) => d.launch(
                module,
                entry,
                crate::ptx::Dims {
                    grid: [blocks as u32, 1, 1],
                    block: [BLOCK_SIZE, 1, 1],
                },
                args,
            ),
        }
    }
}

/// Run `f` with the PTX device of a buffer and its pointer argument (`len` elements). Keeps
/// cudarc's stream bookkeeping for the pointer alive until `f` returns.
pub(crate) fn with_buffer<T: Element, R>(
    op: &'static str,
    storage: &mut Storage<T>,
    len: usize,
    f: impl FnOnce(&PtxDevice, KernelArg) -> Result<R>,
) -> Result<R> {
    let bytes = (len * T::DTYPE.size()) as u64;
    let _ = (&f, bytes);
    match storage {
        #[cfg(feature = "cuda")]
        Storage::Cuda(s) => {
            let dev = s.dev.clone();
            let stream = dev.stream().clone();
            let (addr, _guard) = s.ptr_mut(&stream);
            f(&PtxDevice::Cuda(dev), KernelArg::Ptr { addr, bytes })
        }
        #[cfg(feature = "ptx-emu")]
        Storage::PtxEmu(s) => {
            let addr = s.addr();
            f(
                &PtxDevice::Emu(s.dev.clone()),
                KernelArg::Ptr { addr, bytes },
            )
        }
        #[allow(unreachable_patterns)]
        _ => Err(Error::Unsupported {
            op,
            backend: "this",
            what: "the buffer is not on a PTX backend".into(),
        }),
    }
}
