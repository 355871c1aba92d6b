//! The generator's state in its storage type: f32, or bf16 where the mechanism bounds the
//! error (see [`super::NoiseGenerator::set_state_dtype`]).

use half::bf16;

use crate::backend::Device;
use crate::buffer::{Buffer, DType};
use crate::{Error, Result};

use super::OP;

pub(crate) enum State {
    F32(Buffer<f32>),
    Bf16(Buffer<bf16>),
}

impl State {
    /// `len` zeros of `dtype` (f32 or bf16) on `dev`.
    pub fn zeros(dev: &Device, dtype: DType, len: usize) -> Result<State> {
        Ok(match dtype {
            DType::BF16 => State::Bf16(dev.zeros(len)?),
            _ => State::F32(dev.zeros(len)?),
        })
    }

    pub fn dtype(&self) -> DType {
        match self {
            State::F32(_) => DType::F32,
            State::Bf16(_) => DType::BF16,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            State::F32(b) => b.len(),
            State::Bf16(b) => b.len(),
        }
    }

    /// The elements as little-endian bytes of their type.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(match self {
            State::F32(b) => b.download()?.iter().flat_map(|x| x.to_le_bytes()).collect(),
            State::Bf16(b) => b.download()?.iter().flat_map(|x| x.to_le_bytes()).collect(),
        })
    }

    /// Overwrite from [`State::to_bytes`]'s bytes (checked to be `len` elements).
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let size = self.dtype().size();
        if bytes.len() != self.len() * size {
            return Err(Error::InvalidArgument {
                op: OP,
                what: "restore: the saved state has another length".into(),
            });
        }
        match self {
            State::F32(b) => b.write(
                &bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect::<Vec<_>>(),
            ),
            State::Bf16(b) => b.write(
                &bytes
                    .chunks_exact(2)
                    .map(|c| bf16::from_le_bytes([c[0], c[1]]))
                    .collect::<Vec<_>>(),
            ),
        }
    }

    /// The kernels' argument for elements `skip .. skip + len` (PTX backends).
    pub fn ptr(&self, skip: usize, len: usize) -> Result<crate::backend::ptx::KernelArg> {
        match self {
            State::F32(b) => crate::backend::ptx::ptr_of(OP, b, skip, len),
            State::Bf16(b) => crate::backend::ptx::ptr_of(OP, b, skip, len),
        }
    }

    /// Elements `first .. first + count` as a wgpu binding range (whole words: `first` and
    /// `count` are even for bf16, as block windows are).
    #[cfg(feature = "wgpu")]
    pub fn range(&self, first: usize, count: usize) -> Result<crate::backend::wgpu::Range<'_>> {
        fn of<T: crate::buffer::Element>(
            b: &Buffer<T>,
            first: usize,
            count: usize,
        ) -> Result<crate::backend::wgpu::Range<'_>> {
            match &b.storage {
                crate::buffer::Storage::Wgpu(s) => {
                    Ok(s.range(first, count.max(1), T::DTYPE.size()))
                }
                _ => Err(super::internal("a wgpu state elsewhere")),
            }
        }
        match self {
            State::F32(b) => of(b, first, count),
            State::Bf16(b) => of(b, first, count),
        }
    }
}
