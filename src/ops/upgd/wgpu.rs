//! wgpu glue of UPGD (`shaders/upgd.wgsl`): two dispatches per step over the chunk table (one
//! fused in the one-pass mode). A model larger than one storage binding runs as one dispatch per
//! window of the flat buffers (see [`windows`]), all windows of a pass in one submission.

use super::{DeviceState, Params as Model, Scalars, Slots, TensorSpec, Traces, Variant};
use crate::backend::wgpu::{Dispatch, Range, WgpuStorage, bind_whole, split_u64};
use crate::buffer::{Buffer, Element, Float, Storage};
use crate::{Error, Result};

const OP: &str = "upgd";

/// `Params` of upgd.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    seed: [u32; 2],
    stream: [u32; 2],
    bc: f32,
    decay: f32,
    neg_lr: f32,
    sigma: f32,
    b1: f32,
    omb1: f32,
    b2: f32,
    omb2: f32,
    eps: f32,
    bc1: f32,
    sqrt_bc2: f32,
    beta: f32,
    omb: f32,
    wtype: u32,
    gtype: u32,
    flags: u32,
    cur: u32,
    rows: u32,
    nchunks: u32,
    scale: u32,
    next: u32,
    uflags: u32,
    utype: u32,
    base: u32,
    chunk0: u32,
    pad: [u32; 3],
}

fn storage<T: Element>(b: &Buffer<T>) -> Result<&WgpuStorage> {
    match &b.storage {
        Storage::Wgpu(s) => Ok(s),
        _ => Err(Error::InvalidArgument {
            op: OP,
            what: "internal: a buffer of the step is not on wgpu".into(),
        }),
    }
}

/// A small buffer bound whole (the chunk table, the state, the row sums), refused past one
/// binding.
fn whole<'a, T: Element>(b: &'a Buffer<T>, binding: u32) -> Result<Range<'a>> {
    bind_whole(b, binding, OP, "the chunk table or row sums")
}

/// A window of a flat buffer: `span` elements from `base`, cut at the buffer's end.
fn window<'a, T: Element>(
    b: &'a Buffer<T>,
    w: &Window,
    span: usize,
    binding: u32,
) -> Result<Range<'a>> {
    let s = storage(b)?;
    let count = span.min(b.len() - w.base).max(1);
    Ok(s.range(w.base, count, T::DTYPE.size()).at(binding))
}

/// A moment buffer's window, or the one-element scratch where the variant has none.
fn moments<'a, U: Element>(
    b: Option<&'a Buffer<U>>,
    scratch: &'a Buffer<f32>,
    w: &Window,
    span: usize,
    binding: u32,
) -> Result<Range<'a>> {
    match b {
        Some(b) => window(b, w, span, binding),
        None => whole(scratch, binding),
    }
}

/// Chunks `chunk0 .. chunk0 + count` and the element `base` their binding windows start at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub base: usize,
    pub chunk0: usize,
    pub count: usize,
}

/// Elements a window spans on `dev`: the binding limit in 4-byte elements, in whole chunks.
pub(crate) fn span(chunk_bytes: u64) -> usize {
    (chunk_bytes as usize / 4) / 256 * 256
}

/// Group the chunk table (8 u32 per chunk) into binding windows of `span` elements. Each window
/// starts at the 256-element boundary below its first chunk (so 16-bit halves and the storage
/// offset alignment line up) and takes chunks while they end inside it. A gated chunk's gate must
/// lie in the same window.
pub(crate) fn windows(table: &[u32], span: usize) -> Result<Vec<Window>> {
    if span < 512 {
        return Err(Error::InvalidArgument {
            op: OP,
            what: format!(
                "a binding window of {span} elements is too small for UPGD (512 at least)"
            ),
        });
    }
    let mut out: Vec<Window> = Vec::new();
    for (c, e) in table.chunks_exact(8).enumerate() {
        let (start, count) = (e[0] as usize, e[1] as usize);
        match out.last_mut() {
            Some(w) if start + count <= w.base + span => w.count += 1,
            _ => out.push(Window {
                base: start / 256 * 256,
                chunk0: c,
                count: 1,
            }),
        }
        let w = out[out.len() - 1];
        if e[7] == 1 {
            let gate = e[5] as usize;
            let units = (e[4] as usize + count - 1) / e[3] as usize + 1;
            if gate < w.base || gate + units > w.base + span {
                return Err(Error::Unsupported {
                    op: OP,
                    backend: "wgpu",
                    what: "feature-level UPGD with a gate outside its tensor's binding window \
                           (the model exceeds one storage binding)"
                        .into(),
                });
            }
        }
    }
    Ok(out)
}

/// Windows for [`super::Upgd::step_list`]: each tensor's chunks grouped as [`windows`] does,
/// so that no window crosses a tensor (each binds one tensor's buffers), with the tensor's
/// index. Tensors must start on a 256-element boundary; `Err` says why the layout cannot run.
pub(crate) fn list_windows(
    table: &[u32],
    span: usize,
    tensor_chunks: &[(usize, usize)],
) -> std::result::Result<Vec<(usize, Window)>, String> {
    let mut out = Vec::new();
    for (k, &(first, count)) in tensor_chunks.iter().enumerate() {
        let mine = &table[8 * first..8 * (first + count)];
        if !mine[0].is_multiple_of(256) {
            return Err(format!(
                "tensor {k} does not start on a 256-element boundary"
            ));
        }
        for w in windows(mine, span).map_err(|e| e.to_string())? {
            out.push((
                k,
                Window {
                    chunk0: w.chunk0 + first,
                    ..w
                },
            ));
        }
    }
    Ok(out)
}

/// A window of one tensor's own buffer: the elements of `win` from the tensor's `offset`.
fn tensor_window<'a, T: Element>(
    b: &'a Buffer<T>,
    offset: usize,
    win: &Window,
    span: usize,
    binding: u32,
) -> Result<Range<'a>> {
    let s = storage(b)?;
    let local = win.base - offset;
    let count = span.min(b.len() - local).max(1);
    Ok(s.range(local, count, T::DTYPE.size()).at(binding))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn step<W: Float, G: Float, U: Float>(
    st: &DeviceState,
    variant: Variant,
    sc: &Scalars,
    seed: u64,
    slots: Slots,
    tensors: &[TensorSpec],
    model: Model<'_, W, G>,
    tr: &mut Traces<U>,
) -> Result<()> {
    let (u, m, v) = (&tr.u, tr.m.as_ref(), tr.v.as_ref());
    let kv = variant.kernel();
    let base = Params {
        seed: split_u64(seed),
        stream: split_u64(sc.stream),
        bc: sc.bc,
        decay: sc.decay,
        neg_lr: sc.neg_lr,
        sigma: sc.sigma,
        b1: kv.beta1,
        omb1: sc.one_minus_beta1,
        b2: kv.beta2,
        omb2: sc.one_minus_beta2,
        eps: kv.eps,
        bc1: sc.bc1,
        sqrt_bc2: sc.sqrt_bc2,
        beta: sc.beta,
        omb: sc.one_minus_beta,
        wtype: W::DTYPE.kernel_code(),
        gtype: G::DTYPE.kernel_code(),
        flags: kv.trace_flags | (u32::from(slots.fused) << 2),
        cur: slots.cur as u32,
        rows: st.rows.max(1) as u32,
        nchunks: 0,
        scale: slots.scale as u32,
        next: slots.next as u32,
        uflags: kv.update_flags,
        utype: U::DTYPE.kernel_code(),
        base: 0,
        chunk0: 0,
        pad: [0; 3],
    };
    let dev = &storage(u)?.dev;
    let span = span(dev.chunk_bytes());
    // Each window with the tensor it binds (None: the flat buffers).
    let wins: Vec<(Option<usize>, Window)> = match &model {
        Model::Flat { .. } => st.windows.iter().map(|w| (None, *w)).collect(),
        Model::List { .. } => match &st.list_windows {
            Ok(l) => l.iter().map(|&(k, w)| (Some(k), w)).collect(),
            Err(why) => {
                return Err(Error::Unsupported {
                    op: OP,
                    backend: "wgpu",
                    what: format!("this layout as a list of buffers: {why}"),
                });
            }
        },
    };
    let per_window = |flags: u32| -> Vec<Params> {
        wins.iter()
            .map(|(_, win)| Params {
                flags,
                nchunks: win.count as u32,
                base: win.base as u32,
                chunk0: win.chunk0 as u32,
                ..base
            })
            .collect()
    };
    let trace_params = per_window(base.flags);
    let update_params = per_window(kv.update_flags);
    // One dispatch per window; the update entry declares no h (binding 3).
    let passes = |with_h: bool| -> Result<Vec<Dispatch<'_>>> {
        let params = if with_h {
            &trace_params
        } else {
            &update_params
        };
        wins.iter()
            .zip(params)
            .map(|((k, win), p)| {
                let mut buffers = match (&model, *k) {
                    (Model::Flat { w, g, h }, _) => {
                        let mut b = vec![window(&**w, win, span, 1)?, window(*g, win, span, 2)?];
                        if with_h {
                            b.push(window(h.unwrap_or(g), win, span, 3)?);
                        }
                        b
                    }
                    (Model::List { w, g, h }, Some(k)) => {
                        let off = tensors[k].offset;
                        let mut b = vec![
                            tensor_window(&w[k], off, win, span, 1)?,
                            tensor_window(&g[k], off, win, span, 2)?,
                        ];
                        if with_h {
                            let h = h.map_or(&g[k], |h| &h[k]);
                            b.push(tensor_window(h, off, win, span, 3)?);
                        }
                        b
                    }
                    _ => {
                        return Err(Error::InvalidArgument {
                            op: OP,
                            what: "internal: a list window without its tensor".into(),
                        });
                    }
                };
                buffers.extend([
                    window(u, win, span, 4)?,
                    whole(&st.chunks, 5)?,
                    whole(&st.state, 6)?,
                    whole(&st.rowsq, 7)?,
                    moments(m, &st.scratch, win, span, 8)?,
                    moments(v, &st.scratch, win, span, 9)?,
                ]);
                Ok(Dispatch {
                    params: bytemuck::bytes_of(p),
                    buffers,
                    invocations: win.count as u64 * 256,
                })
            })
            .collect()
    };
    dev.dispatch("upgd", "trace", &passes(true)?)?;
    if slots.fused {
        return Ok(());
    }
    let work = passes(false)?;
    dev.dispatch("upgd", "update", &work)
}
