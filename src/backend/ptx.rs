//! What the two backends that run `kernels/*.ptx` share: the argument list of a launch and the
//! 1D launch itself, so an op's PTX glue is written once and runs on a GPU through cudarc or on
//! the CPU through the emulator.

use crate::buffer::{Element, Storage};
use crate::{Error, Result};

/// Threads per block in every launch of the crate.
pub const BLOCK_SIZE: u32 = 256;

/// Dynamic shared memory a launch may ask for: what every CUDA device since sm_20 grants a
/// block without opting in to more per kernel.
pub const MAX_DYNAMIC_SHARED: u32 = 48 << 10;

/// The dynamic shared memory for a block accumulator of `n` f32 (kernels/common/mlp_bw.ptx):
/// `4 n` bytes when they fit, else 0 (the kernel then adds to the block's global slice).
#[cfg_attr(not(any(feature = "cuda", feature = "ptx-emu")), allow(dead_code))]
pub(crate) fn accumulator_shared(n: usize) -> u32 {
    u32::try_from(n * 4)
        .ok()
        .filter(|&b| b <= MAX_DYNAMIC_SHARED)
        .unwrap_or(0)
}

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
    /// A buffer passed as `addr - shift` (wrapping): a kernel that indexes it by global element
    /// index reaches `addr` at the index `shift` stands for. The bytes the kernel may touch
    /// are still `addr .. addr + bytes`.
    Shifted {
        addr: u64,
        bytes: u64,
        shift: u64,
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
        // SAFETY: forwarded from the caller.
        unsafe { self.launch_1d_shared(module, entry, op, args, threads, 0) }
    }

    /// [`PtxDevice::launch_1d`] with `shared` bytes of dynamic shared memory per block (at
    /// most [`MAX_DYNAMIC_SHARED`]), which the entry's `.extern .shared` array names.
    ///
    /// # Safety
    /// As for [`PtxDevice::launch_1d`]; the kernel must also stay inside `shared` bytes.
    #[cfg_attr(
        not(any(feature = "cuda", feature = "ptx-emu")),
        allow(unused_variables)
    )]
    pub(crate) unsafe fn launch_1d_shared(
        &self,
        module: &'static str,
        entry: &'static str,
        op: &str,
        args: &[KernelArg],
        threads: u64,
        shared: u32,
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
        if shared > MAX_DYNAMIC_SHARED {
            return Err(Error::LimitExceeded {
                what: format!("{op}: dynamic shared memory bytes per block"),
                requested: u64::from(shared),
                max: u64::from(MAX_DYNAMIC_SHARED),
            });
        }
        match *self {
            #[cfg(feature = "cuda")]
            // SAFETY: forwarded from the caller.
            PtxDevice::Cuda(ref d) => unsafe {
                d.launch(module, entry, blocks as u32, BLOCK_SIZE, shared, args)
            },
            #[cfg(feature = "ptx-emu")]
            PtxDevice::Emu(ref d) => d.launch(
                module,
                entry,
                crate::ptx::Dims {
                    grid: [blocks as u32, 1, 1],
                    block: [BLOCK_SIZE, 1, 1],
                    shared,
                },
                args,
            ),
        }
    }
}

impl KernelArg {
    /// This buffer argument passed `shift` bytes before its address (see
    /// [`KernelArg::Shifted`]); other arguments are returned unchanged.
    pub(crate) fn shifted(self, shift: u64) -> KernelArg {
        match self {
            KernelArg::Ptr { addr, bytes } => KernelArg::Shifted { addr, bytes, shift },
            other => other,
        }
    }
}

/// Run `f` with the PTX device of a buffer and its pointer argument (`len` elements). Keeps
/// cudarc's stream bookkeeping for the pointer alive until `f` returns.
#[cfg_attr(
    not(any(feature = "cuda", feature = "ptx-emu")),
    allow(unused_variables)
)]
pub(crate) fn with_buffer<T: Element, R>(
    op: &'static str,
    storage: &mut Storage<T>,
    len: usize,
    f: impl FnOnce(&PtxDevice, KernelArg) -> Result<R>,
) -> Result<R> {
    let bytes = (len * T::DTYPE.size()) as u64;
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

impl PtxDevice {
    /// The PTX device behind `dev`, if it runs PTX.
    pub(crate) fn of(dev: &crate::Device) -> Option<PtxDevice> {
        match dev {
            #[cfg(feature = "cuda")]
            crate::Device::Cuda(d) => Some(PtxDevice::Cuda(d.clone())),
            #[cfg(feature = "ptx-emu")]
            crate::Device::PtxEmu(d) => Some(PtxDevice::Emu(d.clone())),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

/// The pointer argument for `len` elements of a buffer on a PTX backend, `skip` elements in.
///
/// On CUDA this reads the address without holding cudarc's stream bookkeeping past the call:
/// every op of the crate runs on the device's one stream, so stream order already orders the
/// kernels that use the address. Ops that need the bookkeeping use [`with_buffer`].
#[cfg_attr(
    not(any(feature = "cuda", feature = "ptx-emu")),
    allow(unused_variables)
)]
pub(crate) fn ptr_of<T: Element>(
    op: &'static str,
    buf: &crate::Buffer<T>,
    skip: usize,
    len: usize,
) -> Result<KernelArg> {
    let size = T::DTYPE.size() as u64;
    let (bytes, skip_bytes) = (len as u64 * size, skip as u64 * size);
    match &buf.storage {
        #[cfg(feature = "cuda")]
        Storage::Cuda(s) => {
            let stream = s.dev.stream().clone();
            let (addr, guard) = s.ptr(&stream);
            drop(guard);
            Ok(KernelArg::Ptr {
                addr: addr + skip_bytes,
                bytes,
            })
        }
        #[cfg(feature = "ptx-emu")]
        Storage::PtxEmu(s) => Ok(KernelArg::Ptr {
            addr: s.addr() + skip_bytes,
            bytes,
        }),
        #[allow(unreachable_patterns)]
        _ => Err(Error::Unsupported {
            op,
            backend: "this",
            what: "the buffer is not on a PTX backend".into(),
        }),
    }
}
