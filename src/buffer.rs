//! Typed device buffers and the element types they hold.

use crate::backend::Device;
use crate::{Error, Result};

/// The element types a [`Buffer`] can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    U32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The code kernels take for a floating-point element type: 0 f32, 1 f16, 2 bf16 (u32
    /// shares 0: kernels that take u32 have no dtype switch).
    pub(crate) fn kernel_code(self) -> u32 {
        match self {
            DType::F32 | DType::U32 => 0,
            DType::F16 => 1,
            DType::BF16 => 2,
        }
    }

    /// The lower-case name used in kernel entry points, flags and file formats.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::U32 => "u32",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(DType::F32),
            "f16" => Ok(DType::F16),
            "bf16" => Ok(DType::BF16),
            "u32" => Ok(DType::U32),
            _ => Err(Error::InvalidArgument {
                op: "dtype",
                what: format!("unknown element type {s:?}; expected f32, f16, bf16 or u32"),
            }),
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
    impl Sealed for u32 {}
}

/// What CUDA needs of an element type; empty without the `cuda` feature.
#[cfg(feature = "cuda")]
pub trait CudaRepr: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits {}
#[cfg(feature = "cuda")]
impl<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits> CudaRepr for T {}
/// What CUDA needs of an element type; empty without the `cuda` feature.
#[cfg(not(feature = "cuda"))]
pub trait CudaRepr {}
#[cfg(not(feature = "cuda"))]
impl<T> CudaRepr for T {}

/// An element type a [`Buffer`] can hold: f32, f16, bf16 (from `half`) or u32.
pub trait Element:
    sealed::Sealed
    + bytemuck::Pod
    + CudaRepr
    + Copy
    + Default
    + PartialEq
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
{
    const DTYPE: DType;
}

/// A floating-point element type: computed in f32, rounded once (to nearest even) when stored.
pub trait Float: Element {
    fn from_f32(x: f32) -> Self;
    fn to_f32(self) -> f32;
    /// `dst[i] = from_f32(src[i])` (the lengths must match); types with a batch conversion
    /// override it.
    #[inline(always)]
    fn from_f32_slice(dst: &mut [Self], src: &[f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = Self::from_f32(*s);
        }
    }
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
impl Element for half::f16 {
    const DTYPE: DType = DType::F16;
}
impl Element for half::bf16 {
    const DTYPE: DType = DType::BF16;
}
impl Element for u32 {
    const DTYPE: DType = DType::U32;
}

impl Float for f32 {
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        x
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}
impl Float for half::f16 {
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        half::f16::from_f32(x)
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
    /// `half`'s slice conversion: F16C eight at a time where the CPU has it (one call per
    /// element otherwise costs a feature check each); the same rounding as `from_f32`.
    fn from_f32_slice(dst: &mut [Self], src: &[f32]) {
        use half::slice::HalfFloatSliceExt;
        dst.convert_from_f32_slice(src);
    }
}
impl Float for half::bf16 {
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        half::bf16::from_f32(x)
    }
    /// The bits shifted into place, as the kernels widen (`half` also quiets a signalling NaN,
    /// a branch that keeps loops from vectorizing; every op here treats NaNs alike).
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f32::from_bits(u32::from(self.to_bits()) << 16)
    }
}

/// Typed memory on one [`Device`]. It knows its device and its length; ops enqueue work on it
/// without a host round trip, and [`Buffer::download`] waits for that work.
pub struct Buffer<T: Element> {
    pub(crate) len: usize,
    pub(crate) storage: Storage<T>,
}

pub(crate) enum Storage<T: Element> {
    Cpu(Vec<T>),
    #[cfg(feature = "wgpu")]
    Wgpu(crate::backend::wgpu::WgpuStorage),
    #[cfg(feature = "cuda")]
    Cuda(crate::backend::cuda::CudaStorage<T>),
    #[cfg(feature = "ptx-emu")]
    PtxEmu(crate::backend::ptx_emu::EmuStorage),
}

impl<T: Element> Buffer<T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the buffer holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device the buffer lives on.
    pub fn device(&self) -> Device {
        match &self.storage {
            Storage::Cpu(_) => Device::Cpu,
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(s) => Device::Wgpu(s.dev.clone()),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => Device::Cuda(s.dev.clone()),
            #[cfg(feature = "ptx-emu")]
            Storage::PtxEmu(s) => Device::PtxEmu(s.dev.clone()),
        }
    }

    /// Copy the contents to the host, waiting for all work enqueued on them.
    pub fn download(&self) -> Result<Vec<T>> {
        match &self.storage {
            Storage::Cpu(v) => Ok(v.clone()),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(s) => s.download(self.len),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => s.download(self.len),
            #[cfg(feature = "ptx-emu")]
            Storage::PtxEmu(s) => s.download(self.len),
        }
    }

    /// Overwrite the whole buffer from the host; `data` must have the buffer's length.
    pub fn write(&mut self, data: &[T]) -> Result<()> {
        crate::validate::len("Buffer::write", "data", self.len, data.len())?;
        match &mut self.storage {
            Storage::Cpu(v) => {
                v.copy_from_slice(data);
                Ok(())
            }
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(s) => s.write(data),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => s.write(data),
            #[cfg(feature = "ptx-emu")]
            Storage::PtxEmu(s) => s.write(data),
        }
    }

    /// Zero every element on the buffer's device, without a host copy (ops that accumulate
    /// with atomics start from this).
    #[cfg_attr(
        not(any(feature = "wgpu", feature = "cuda", feature = "ptx-emu")),
        allow(dead_code)
    )]
    pub(crate) fn clear(&mut self) -> Result<()> {
        let len = self.len;
        match &mut self.storage {
            Storage::Cpu(v) => {
                v[..len].fill(T::default());
                Ok(())
            }
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(s) => s.dev.clear(s, (len * T::DTYPE.size()) as u64),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => s.clear(len),
            #[cfg(feature = "ptx-emu")]
            Storage::PtxEmu(s) => {
                s.clear(len * T::DTYPE.size());
                Ok(())
            }
        }
    }

    /// The host memory of a CPU buffer, for an op's CPU path (`op` names it in the error).
    pub(crate) fn host_mut(&mut self, op: &'static str) -> Result<&mut [T]> {
        match &mut self.storage {
            Storage::Cpu(v) => Ok(v),
            #[allow(unreachable_patterns)]
            _ => Err(crate::Error::InvalidArgument {
                op,
                what: "internal: a CPU path met a buffer on another device".into(),
            }),
        }
    }

    /// The host slice of a CPU buffer.
    pub fn as_host_slice(&self) -> Option<&[T]> {
        match &self.storage {
            Storage::Cpu(v) => Some(v),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

impl<T: Element> std::fmt::Debug for Buffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer<{}>[{}] on {}", T::DTYPE, self.len, self.device())
    }
}
