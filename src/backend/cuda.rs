//! The CUDA backend: context and stream, buffers, the module cache and launch helpers.
//!
//! PTX from `kernels/` is embedded in the binary and loaded lazily, once per device. Probing
//! follows the order that keeps cudarc from panicking: `is_culib_present()`, then
//! `device_count()`, then `CudaContext::new(i)`. Every op launches on the context's default
//! stream, so ops on one device run in the order they were called.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DevicePtrMut,
    LaunchConfig, PushKernelArg,
};

use super::memory::{Lease, Ledger};
use super::ptx::KernelArg;

use crate::buffer::{Buffer, Element, Storage};
use crate::{Error, Result};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A CUDA GPU with its stream and module cache. Cheap to clone.
#[derive(Clone)]
pub struct CudaDevice(Arc<Inner>);

struct Inner {
    id: u64,
    name: String,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    /// Functions looked up once per (module, entry), not at every launch.
    functions: Mutex<HashMap<(&'static str, String), CudaFunction>>,
    ledger: Arc<Ledger>,
}

fn driver_present() -> std::result::Result<(), String> {
    // SAFETY: only asks the dynamic loader whether libcuda can be opened.
    if unsafe { cudarc::driver::sys::is_culib_present() } {
        Ok(())
    } else {
        Err("libcuda.so was not found (no NVIDIA driver)".into())
    }
}

/// Describe every CUDA GPU, or say why there is none.
pub fn probe() -> std::result::Result<Vec<String>, String> {
    driver_present()?;
    let n = CudaContext::device_count().map_err(|e| format!("cuDeviceGetCount: {e}"))?;
    if n <= 0 {
        return Err("the driver reports no CUDA device".into());
    }
    Ok((0..n as usize)
        .map(|i| match CudaDevice::new(i) {
            Ok(d) => d.describe(),
            Err(e) => format!("device {i}: {e}"),
        })
        .collect())
}

impl CudaDevice {
    /// Open GPU `ordinal`.
    pub fn new(ordinal: usize) -> Result<Self> {
        let unavailable = |reason: String| Error::BackendUnavailable {
            backend: "cuda",
            reason,
        };
        driver_present().map_err(unavailable)?;
        let n = CudaContext::device_count()
            .map_err(|e| unavailable(format!("cuDeviceGetCount: {e}")))?;
        if ordinal >= n.max(0) as usize {
            return Err(unavailable(format!(
                "device {ordinal} requested, {n} present"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| unavailable(format!("{e}")))?;
        let (maj, min) = ctx.compute_capability()?;
        let mem = ctx.total_mem()? >> 20;
        let name = format!("{} (sm_{maj}{min}, {mem} MiB)", ctx.name()?);
        let stream = ctx.default_stream();
        Ok(CudaDevice(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name,
            ctx,
            stream,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            ledger: Arc::default(),
        })))
    }

    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }

    pub(crate) fn describe(&self) -> String {
        format!("cuda:{} {}", self.0.ctx.ordinal(), self.0.name)
    }

    /// The cudarc context and the stream every op launches on.
    pub fn raw(&self) -> (&Arc<CudaContext>, &Arc<CudaStream>) {
        (&self.0.ctx, &self.0.stream)
    }

    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.0.stream
    }

    /// The function `entry` of PTX module `module`, loading the module on first use.
    pub(crate) fn function(&self, module: &'static str, entry: &str) -> Result<CudaFunction> {
        let key = (module, entry.to_string());
        if let Some(f) = self
            .0
            .functions
            .lock()
            .map_err(|_| Error::Cuda("function cache lock poisoned".into()))?
            .get(&key)
        {
            return Ok(f.clone());
        }
        let mut cache = self
            .0
            .modules
            .lock()
            .map_err(|_| Error::Cuda("module cache lock poisoned".into()))?;
        let m = match cache.get(module) {
            Some(m) => m.clone(),
            None => {
                let src = crate::sources::ptx(module).ok_or_else(|| Error::Unsupported {
                    op: module,
                    backend: "cuda",
                    what: "no PTX module of that name".into(),
                })?;
                let m = self.0.ctx.load_module(cudarc::nvrtc::Ptx::from_src(src))?;
                cache.insert(module, m.clone());
                m
            }
        };
        let f = m.load_function(entry)?;
        self.0
            .functions
            .lock()
            .map_err(|_| Error::Cuda("function cache lock poisoned".into()))?
            .insert(key, f.clone());
        Ok(f)
    }

    pub(crate) fn zeros<T: Element>(&self, len: usize) -> Result<CudaStorage<T>> {
        let slice = self.0.stream.alloc_zeros::<T>(len.max(1))?;
        let bytes = (len.max(1) * std::mem::size_of::<T>()) as u64;
        Ok(CudaStorage {
            dev: self.clone(),
            mem: Mem::Owned(slice),
            _lease: Some(self.0.ledger.lease(bytes)),
        })
    }

    pub(crate) fn ledger(&self) -> &Ledger {
        &self.0.ledger
    }

    pub(crate) fn upload<T: Element>(&self, data: &[T]) -> Result<CudaStorage<T>> {
        let mut s = self.zeros::<T>(data.len())?;
        s.write(data)?;
        Ok(s)
    }

    pub(crate) fn copy<T: Element>(
        &self,
        src: &CudaStorage<T>,
        dst: &mut CudaStorage<T>,
        len: usize,
    ) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        // Raw driver calls act on the thread's current context; cudarc's own calls bind it.
        self.0.ctx.bind_to_thread()?;
        let stream = &self.0.stream;
        let (s, _gs) = src.ptr(stream);
        let (d, _gd) = dst.ptr_mut(stream);
        // SAFETY: both ranges hold `len` elements on this context (checked by the caller's
        // validation), and the copy is ordered on our stream.
        unsafe {
            cudarc::driver::result::memcpy_dtod_async(
                d,
                s,
                len * T::DTYPE.size(),
                stream.cu_stream(),
            )?;
        }
        Ok(())
    }

    pub(crate) fn synchronize(&self) -> Result<()> {
        Ok(self.0.stream.synchronize()?)
    }
}

enum Mem<T> {
    Owned(CudaSlice<T>),
    /// A caller's device pointer; the caller keeps it alive.
    Raw(u64),
}

/// Device memory of a CUDA [`Buffer`]: our allocation, a caller's `CudaSlice`, or a raw pointer.
pub struct CudaStorage<T: Element> {
    pub(crate) dev: CudaDevice,
    mem: Mem<T>,
    /// Our own allocations' bytes on the device's ledger (none for a caller's).
    _lease: Option<Lease>,
}

/// Keeps cudarc's stream bookkeeping for a pointer alive until a launch is enqueued.
pub(crate) type PtrGuard<'a> = Option<cudarc::driver::SyncOnDrop<'a>>;

impl<T: Element> CudaStorage<T> {
    pub(crate) fn ptr<'a>(&'a self, stream: &'a CudaStream) -> (u64, PtrGuard<'a>) {
        match &self.mem {
            Mem::Owned(s) => {
                let (p, g) = s.device_ptr(stream);
                (p, Some(g))
            }
            Mem::Raw(p) => (*p, None),
        }
    }

    pub(crate) fn ptr_mut<'a>(&'a mut self, stream: &'a CudaStream) -> (u64, PtrGuard<'a>) {
        match &mut self.mem {
            Mem::Owned(s) => {
                let (p, g) = s.device_ptr_mut(stream);
                (p, Some(g))
            }
            Mem::Raw(p) => (*p, None),
        }
    }

    pub(crate) fn download(&self, len: usize) -> Result<Vec<T>> {
        let mut out = vec![T::default(); len];
        if len == 0 {
            return Ok(out);
        }
        self.dev.0.ctx.bind_to_thread()?;
        let stream = self.dev.stream().clone();
        let (p, g) = self.ptr(&stream);
        // SAFETY: `p` holds at least `len` elements of T; the copy is synchronous on our stream.
        unsafe {
            cudarc::driver::result::memcpy_dtoh_async(&mut out[..], p, stream.cu_stream())?;
        }
        drop(g);
        stream.synchronize()?;
        Ok(out)
    }

    /// Zeroes the first `len` elements on the device's stream (no host copy, no wait).
    pub(crate) fn clear(&mut self, len: usize) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.dev.0.ctx.bind_to_thread()?;
        let stream = self.dev.stream().clone();
        let (p, g) = self.ptr_mut(&stream);
        // SAFETY: `p` holds at least `len` elements of T (checked by the caller's buffer).
        unsafe {
            cudarc::driver::result::memset_d8_async(
                p,
                0,
                len * std::mem::size_of::<T>(),
                stream.cu_stream(),
            )?;
        }
        drop(g);
        Ok(())
    }

    pub(crate) fn write(&mut self, data: &[T]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.dev.0.ctx.bind_to_thread()?;
        let stream = self.dev.stream().clone();
        let (p, g) = self.ptr_mut(&stream);
        // SAFETY: `p` holds `data.len()` elements (checked by the caller); we synchronize before
        // returning, so `data` outlives the copy.
        unsafe {
            cudarc::driver::result::memcpy_htod_async(p, data, stream.cu_stream())?;
        }
        drop(g);
        stream.synchronize()?;
        Ok(())
    }
}

impl<T: Element> Buffer<T> {
    /// Take a caller's `CudaSlice` as a buffer on `dev`, without copying. It must belong to
    /// `dev`'s context; give it back with [`Buffer::into_cuda_slice`].
    pub fn from_cuda_slice(dev: &CudaDevice, slice: CudaSlice<T>) -> Result<Self> {
        if slice.context().cu_ctx() != dev.0.ctx.cu_ctx() {
            return Err(Error::WrongDevice {
                op: "Buffer::from_cuda_slice",
                arg: "slice",
                expected: dev.describe(),
                got: format!("another CUDA context (device {})", slice.ordinal()),
            });
        }
        Ok(Buffer {
            len: slice.len(),
            storage: Storage::Cuda(CudaStorage {
                dev: dev.clone(),
                mem: Mem::Owned(slice),
                _lease: None,
            }),
        })
    }

    /// View `len` elements at a raw device pointer as a buffer on `dev`.
    ///
    /// # Safety
    /// `ptr` must point to at least `len` elements of `T` in `dev`'s context, aligned for `T`,
    /// valid and not used by anything else for as long as the buffer is used.
    pub unsafe fn from_cuda_ptr(dev: &CudaDevice, ptr: u64, len: usize) -> Self {
        Buffer {
            len,
            storage: Storage::Cuda(CudaStorage {
                dev: dev.clone(),
                mem: Mem::Raw(ptr),
                _lease: None,
            }),
        }
    }

    /// Give back the `CudaSlice` of a CUDA buffer that owns one (`None` for views over a raw
    /// pointer and for other backends).
    pub fn into_cuda_slice(self) -> Option<CudaSlice<T>> {
        match self.storage {
            Storage::Cuda(CudaStorage {
                mem: Mem::Owned(s), ..
            }) => Some(s),
            _ => None,
        }
    }
}

impl CudaDevice {
    /// Launch `entry` of `module` with `args` on the device's stream.
    ///
    /// # Safety
    /// The arguments must match the entry's parameters and the kernel must stay within the
    /// memory they describe.
    pub(crate) unsafe fn launch(
        &self,
        module: &'static str,
        entry: &str,
        grid: u32,
        block: u32,
        shared: u32,
        args: &[KernelArg],
    ) -> Result<()> {
        let f = self.function(module, entry)?;
        // The values of shifted pointers, alive until the launch.
        let shifted: Vec<u64> = args
            .iter()
            .map(|a| match a {
                KernelArg::Shifted { addr, shift, .. } => addr.wrapping_sub(*shift),
                _ => 0,
            })
            .collect();
        let mut b = self.0.stream.launch_builder(&f);
        for (a, s) in args.iter().zip(&shifted) {
            match a {
                KernelArg::Ptr { addr, .. } => b.arg(addr),
                KernelArg::Shifted { .. } => b.arg(s),
                KernelArg::U64(v) => b.arg(v),
                KernelArg::U32(v) => b.arg(v),
                KernelArg::F32(v) => b.arg(v),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (block, 1, 1),
            shared_mem_bytes: shared,
        };
        // SAFETY: the caller vouches for the arguments and the kernel's bounds.
        unsafe { b.launch(cfg) }?;
        Ok(())
    }
}
