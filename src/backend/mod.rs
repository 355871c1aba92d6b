//! Devices: the CPU, wgpu adapters and CUDA GPUs, chosen at run time.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod memory;
pub(crate) mod ptx;
#[cfg(feature = "ptx-emu")]
pub mod ptx_emu;
#[cfg(feature = "wgpu")]
pub mod wgpu;

use crate::buffer::{Buffer, Element, Storage};
use crate::{Error, Result};
use memory::{Ledger, MemoryUse};

/// The kinds of backend, as named by `TRAINKERN_BACKEND` and `--backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    Cpu,
    Wgpu,
    Cuda,
    /// The CPU interpreter of the PTX in `kernels/`, for checking kernels without a GPU.
    PtxEmu,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
            Backend::PtxEmu => "ptx-emu",
        }
    }

    pub const ALL: [Backend; 4] = [Backend::Cpu, Backend::Wgpu, Backend::Cuda, Backend::PtxEmu];
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Backend::Cpu),
            "wgpu" => Ok(Backend::Wgpu),
            "cuda" => Ok(Backend::Cuda),
            "ptx-emu" => Ok(Backend::PtxEmu),
            _ => Err(Error::InvalidArgument {
                op: "backend",
                what: format!("unknown backend {s:?}; expected cpu, wgpu, cuda or ptx-emu"),
            }),
        }
    }
}

/// Where ops run. Cheap to clone: the GPU variants hold a shared context (modules and pipelines
/// are compiled once per context and cached there).
#[derive(Clone)]
pub enum Device {
    /// The CPU reference, always available, parallel over chunks with rayon.
    Cpu,
    /// A wgpu adapter (Vulkan, Metal, DX12; lavapipe when asked for).
    #[cfg(feature = "wgpu")]
    Wgpu(wgpu::WgpuDevice),
    /// A CUDA GPU, running the hand-written PTX in `kernels/`.
    #[cfg(feature = "cuda")]
    Cuda(cuda::CudaDevice),
    /// The PTX emulator: the same PTX as `Cuda`, interpreted on the CPU (never chosen by
    /// [`Device::best`]; ask for it by name).
    #[cfg(feature = "ptx-emu")]
    PtxEmu(ptx_emu::EmuDevice),
}

impl Device {
    /// The best device present: `TRAINKERN_BACKEND` if set, else CUDA, then a hardware wgpu
    /// adapter, then the CPU. Never panics; a backend that fails to start is skipped.
    pub fn best() -> Result<Device> {
        if let Ok(name) = std::env::var("TRAINKERN_BACKEND")
            && !name.is_empty()
        {
            return Device::from_backend(name.parse()?);
        }
        #[cfg(feature = "cuda")]
        if let Ok(d) = cuda::CudaDevice::new(0) {
            return Ok(Device::Cuda(d));
        }
        #[cfg(feature = "wgpu")]
        if let Ok(d) = wgpu::WgpuDevice::new(&wgpu::WgpuOptions::hardware()) {
            return Ok(Device::Wgpu(d));
        }
        Ok(Device::Cpu)
    }

    /// The device memory the crate holds here, now and at its peak since
    /// [`Device::reset_peak_memory`] (`None` on the CPU, which keeps no count; see
    /// [`memory`]).
    pub fn memory(&self) -> Option<MemoryUse> {
        self.ledger().map(Ledger::usage)
    }

    /// Start a new peak of [`Device::memory`] from what is held now.
    pub fn reset_peak_memory(&self) {
        if let Some(l) = self.ledger() {
            l.reset_peak();
        }
    }

    fn ledger(&self) -> Option<&Ledger> {
        match self {
            Device::Cpu => None,
            #[cfg(feature = "wgpu")]
            Device::Wgpu(d) => Some(d.ledger()),
            #[cfg(feature = "cuda")]
            Device::Cuda(d) => Some(d.ledger()),
            #[cfg(feature = "ptx-emu")]
            Device::PtxEmu(d) => Some(d.ledger()),
        }
    }

    /// The CPU reference backend.
    pub fn cpu() -> Device {
        Device::Cpu
    }

    /// A wgpu device on the first adapter found, hardware or software (lavapipe).
    pub fn wgpu() -> Result<Device> {
        #[cfg(feature = "wgpu")]
        {
            Ok(Device::Wgpu(wgpu::WgpuDevice::new(
                &wgpu::WgpuOptions::default(),
            )?))
        }
        #[cfg(not(feature = "wgpu"))]
        {
            Err(not_compiled("wgpu"))
        }
    }

    /// The CUDA GPU with the given ordinal.
    pub fn cuda(ordinal: usize) -> Result<Device> {
        #[cfg(feature = "cuda")]
        {
            Ok(Device::Cuda(cuda::CudaDevice::new(ordinal)?))
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = ordinal;
            Err(not_compiled("cuda"))
        }
    }

    /// The PTX emulator.
    pub fn ptx_emu() -> Result<Device> {
        #[cfg(feature = "ptx-emu")]
        {
            Ok(Device::PtxEmu(ptx_emu::EmuDevice::new()))
        }
        #[cfg(not(feature = "ptx-emu"))]
        {
            Err(not_compiled("ptx-emu"))
        }
    }

    /// The default device of one backend (for wgpu: any adapter, software included).
    pub fn from_backend(b: Backend) -> Result<Device> {
        match b {
            Backend::Cpu => Ok(Device::Cpu),
            Backend::Wgpu => Device::wgpu(),
            Backend::Cuda => Device::cuda(0),
            Backend::PtxEmu => Device::ptx_emu(),
        }
    }

    /// Which backend this device uses.
    pub fn backend(&self) -> Backend {
        match self {
            Device::Cpu => Backend::Cpu,
            #[cfg(feature = "wgpu")]
            Device::Wgpu(_) => Backend::Wgpu,
            #[cfg(feature = "cuda")]
            Device::Cuda(_) => Backend::Cuda,
            #[cfg(feature = "ptx-emu")]
            Device::PtxEmu(_) => Backend::PtxEmu,
        }
    }

    /// True when both name the same device (the same context, not merely the same kind).
    pub fn same(&self, other: &Device) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            #[cfg(feature = "wgpu")]
            (Device::Wgpu(a), Device::Wgpu(b)) => a.id() == b.id(),
            #[cfg(feature = "cuda")]
            (Device::Cuda(a), Device::Cuda(b)) => a.id() == b.id(),
            #[cfg(feature = "ptx-emu")]
            (Device::PtxEmu(a), Device::PtxEmu(b)) => a.id() == b.id(),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// A description: backend, adapter or GPU name.
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
            #[cfg(feature = "wgpu")]
            Device::Wgpu(d) => d.describe(),
            #[cfg(feature = "cuda")]
            Device::Cuda(d) => d.describe(),
            #[cfg(feature = "ptx-emu")]
            Device::PtxEmu(d) => d.describe(),
        }
    }

    /// Copy host data into a new buffer on this device.
    pub fn upload<T: Element>(&self, data: &[T]) -> Result<Buffer<T>> {
        let storage = match self {
            Device::Cpu => Storage::Cpu(data.to_vec()),
            #[cfg(feature = "wgpu")]
            Device::Wgpu(d) => Storage::Wgpu(d.upload(data)?),
            #[cfg(feature = "cuda")]
            Device::Cuda(d) => Storage::Cuda(d.upload(data)?),
            #[cfg(feature = "ptx-emu")]
            Device::PtxEmu(d) => Storage::PtxEmu(d.upload(data)?),
        };
        Ok(Buffer {
            len: data.len(),
            storage,
        })
    }

    /// A new buffer of `len` zeros on this device.
    pub fn zeros<T: Element>(&self, len: usize) -> Result<Buffer<T>> {
        let storage = match self {
            Device::Cpu => Storage::Cpu(cpu::zeros(len)),
            #[cfg(feature = "wgpu")]
            Device::Wgpu(d) => Storage::Wgpu(d.zeros(len * T::DTYPE.size())?),
            #[cfg(feature = "cuda")]
            Device::Cuda(d) => Storage::Cuda(d.zeros(len)?),
            #[cfg(feature = "ptx-emu")]
            Device::PtxEmu(d) => Storage::PtxEmu(d.zeros(len * T::DTYPE.size())?),
        };
        Ok(Buffer { len, storage })
    }

    /// Copy `src` into `dst` on the device: the plain copy that benchmarks use as a yardstick.
    pub fn copy<T: Element>(&self, src: &Buffer<T>, dst: &mut Buffer<T>) -> Result<()> {
        const OP: &str = "copy";
        crate::validate::on_device(OP, "src", self, src)?;
        crate::validate::on_device(OP, "dst", self, dst)?;
        crate::validate::len(OP, "dst", src.len(), dst.len())?;
        match (&src.storage, &mut dst.storage) {
            (Storage::Cpu(s), Storage::Cpu(d)) => {
                cpu::copy(s, d);
                Ok(())
            }
            #[cfg(feature = "wgpu")]
            (Storage::Wgpu(s), Storage::Wgpu(d)) => {
                s.dev.copy(s, d, (src.len * T::DTYPE.size()) as u64)
            }
            #[cfg(feature = "cuda")]
            (Storage::Cuda(s), Storage::Cuda(d)) => s.dev.copy(s, d, src.len),
            #[cfg(feature = "ptx-emu")]
            (Storage::PtxEmu(s), Storage::PtxEmu(d)) => s.dev.copy(s, d, src.len * T::DTYPE.size()),
            #[allow(unreachable_patterns)]
            _ => unreachable!("on_device checked both buffers"),
        }
    }

    /// Wait until all work enqueued on this device has finished.
    pub fn synchronize(&self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            #[cfg(feature = "wgpu")]
            Device::Wgpu(d) => d.synchronize(),
            #[cfg(feature = "cuda")]
            Device::Cuda(d) => d.synchronize(),
            #[cfg(feature = "ptx-emu")]
            Device::PtxEmu(_) => Ok(()),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

#[allow(dead_code)]
fn not_compiled(backend: &'static str) -> Error {
    Error::BackendUnavailable {
        backend,
        reason: format!("trainkern was built without the `{backend}` feature"),
    }
}

/// What probing one backend found, for `trainkern info`.
pub struct Probe {
    pub backend: Backend,
    /// A description of each device found, or the reason none is usable.
    pub found: std::result::Result<Vec<String>, String>,
}

/// Probe every backend without panicking: what each found, or why it is missing.
pub fn probe() -> Vec<Probe> {
    let mut out = vec![Probe {
        backend: Backend::Cpu,
        found: Ok(vec![Device::Cpu.describe()]),
    }];
    #[cfg(feature = "wgpu")]
    out.push(Probe {
        backend: Backend::Wgpu,
        found: wgpu::probe(),
    });
    #[cfg(not(feature = "wgpu"))]
    out.push(Probe {
        backend: Backend::Wgpu,
        found: Err(not_compiled("wgpu").to_string()),
    });
    #[cfg(feature = "cuda")]
    out.push(Probe {
        backend: Backend::Cuda,
        found: cuda::probe(),
    });
    #[cfg(not(feature = "cuda"))]
    out.push(Probe {
        backend: Backend::Cuda,
        found: Err(not_compiled("cuda").to_string()),
    });
    out.push(Probe {
        backend: Backend::PtxEmu,
        found: Device::ptx_emu()
            .map(|d| vec![d.describe() + " [used only when asked for]"])
            .map_err(|e| e.to_string()),
    });
    out
}
