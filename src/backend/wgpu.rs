//! The wgpu backend: adapter and device, buffers, the pipeline cache and the dispatch helper.
//!
//! Every storage buffer is bound as `array<u32>` (16-bit elements two to a word), so one
//! shader serves f32, f16, bf16 and u32 without optional features. Work on a buffer larger than
//! the adapter's `max_storage_buffer_binding_size` is split into chunks, each bound at an offset
//! aligned to `min_storage_buffer_offset_alignment`; all chunks of one op go in one submission.
//! Validation and out-of-memory errors are caught with error scopes and returned as
//! [`Error::Wgpu`]; the uncaptured-error handler records instead of panicking.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::memory::{Lease, Ledger};
use crate::buffer::{Buffer, Element, Storage};
use crate::{Error, Result};

/// Invocations per workgroup in every shader of the crate (`@workgroup_size(256)`).
pub const WORKGROUP_SIZE: u32 = 256;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// How to pick and configure a wgpu adapter.
#[derive(Clone, Debug, Default)]
pub struct WgpuOptions {
    /// Refuse software adapters (lavapipe, WARP, SwiftShader).
    pub hardware_only: bool,
    /// Split work into chunks of at most this many bytes, below the adapter's binding limit.
    /// Tests use it to cross chunk boundaries at small sizes.
    pub max_chunk_bytes: Option<u64>,
}

impl WgpuOptions {
    /// A hardware adapter only, full-size chunks: what [`crate::Device::best`] asks for.
    pub fn hardware() -> Self {
        WgpuOptions {
            hardware_only: true,
            max_chunk_bytes: None,
        }
    }
}

/// A wgpu device and queue with their caches. Cheap to clone.
#[derive(Clone)]
pub struct WgpuDevice(Arc<Inner>);

struct Inner {
    id: u64,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    device: wgpu::Device,
    queue: wgpu::Queue,
    chunk_bytes: u64,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<(&'static str, &'static str), wgpu::ComputePipeline>>,
    uncaptured: Arc<Mutex<Vec<String>>>,
    ledger: Arc<Ledger>,
}

/// One instance for the whole process: wgpu resources of one instance used with a device of
/// another make wgpu-core panic, while within one instance a mismatch is a validation error.
fn instance() -> &'static wgpu::Instance {
    static INSTANCE: std::sync::OnceLock<wgpu::Instance> = std::sync::OnceLock::new();
    INSTANCE.get_or_init(|| {
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
    })
}

fn adapters() -> Vec<wgpu::Adapter> {
    let inst = instance();
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
    pollster::block_on(inst.enumerate_adapters(backends))
}

fn is_software(info: &wgpu::AdapterInfo) -> bool {
    info.device_type == wgpu::DeviceType::Cpu
}

/// Describe every adapter found, or say why there is none.
pub fn probe() -> std::result::Result<Vec<String>, String> {
    let found = adapters();
    if found.is_empty() {
        return Err(
            "no wgpu adapter found (no Vulkan, Metal or DX12 driver; on Linux install \
             mesa-vulkan-drivers for lavapipe or a GPU driver)"
                .into(),
        );
    }
    Ok(found
        .iter()
        .map(|a| {
            let i = a.get_info();
            let l = a.limits();
            format!(
                "{} ({:?}, {:?}, driver {} {}){}; max storage binding {} MiB, max buffer {} MiB, \
                 workgroup storage {} KiB, {} invocations per workgroup",
                i.name,
                i.backend,
                i.device_type,
                i.driver,
                i.driver_info,
                if is_software(&i) {
                    " [software: used only when asked for]"
                } else {
                    ""
                },
                l.max_storage_buffer_binding_size >> 20,
                l.max_buffer_size >> 20,
                l.max_compute_workgroup_storage_size >> 10,
                l.max_compute_invocations_per_workgroup
            )
        })
        .collect())
}

/// Loop iterations one invocation may run in a dispatch. llvmpipe (lavapipe) ends every loop of
/// an invocation once their iterations add up to 65 535 (gallivm's `LP_MAX_TGSI_LOOP_ITERATIONS`,
/// shared between all loops, an atomic operation counted as one), silently; GPUs have no such
/// limit, and the dispatches this costs them are few.
pub(crate) const LOOP_BUDGET: usize = 50_000;

/// How samples are cut into dispatches: each window of `samples` samples is one dispatch per
/// group of consecutive steps.
pub(crate) struct Split {
    pub groups: Vec<std::ops::Range<usize>>,
    pub samples: usize,
}

/// Samples of `steps[k]` loop iterations each step (and `overhead` per sample and dispatch) in
/// dispatches of at most `budget`: where a whole sample fits, one group of every step and
/// windows of as many samples as fit; else windows of one sample whose steps run in
/// consecutive groups, one dispatch each (a step alone past the budget a group of its own).
pub(crate) fn split_steps(steps: &[usize], overhead: usize, budget: usize) -> Split {
    let whole = overhead + steps.iter().sum::<usize>();
    if whole <= budget {
        return Split {
            #[allow(clippy::single_range_in_vec_init)] // one group: every step
            groups: vec![0..steps.len()],
            samples: (budget / whole.max(1)).max(1),
        };
    }
    let (mut groups, mut start, mut loops) = (Vec::new(), 0, overhead);
    for (k, &n) in steps.iter().enumerate() {
        if k > start && loops + n > budget {
            groups.push(start..k);
            (start, loops) = (k, overhead);
        }
        loops += n;
    }
    groups.push(start..steps.len());
    Split { groups, samples: 1 }
}

impl WgpuDevice {
    /// Open a device on the first adapter that fits `opts` (hardware preferred).
    pub fn new(opts: &WgpuOptions) -> Result<Self> {
        let mut found = adapters();
        found.sort_by_key(|a| is_software(&a.get_info()));
        let adapter = found
            .into_iter()
            .find(|a| !(opts.hardware_only && is_software(&a.get_info())))
            .ok_or_else(|| Error::BackendUnavailable {
                backend: "wgpu",
                reason: if opts.hardware_only {
                    "no hardware adapter found".into()
                } else {
                    "no adapter found (install a Vulkan driver, e.g. mesa-vulkan-drivers)".into()
                },
            })?;
        let info = adapter.get_info();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("trainkern"),
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| Error::BackendUnavailable {
            backend: "wgpu",
            reason: format!("{}: request_device failed: {e}", info.name),
        })?;
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        Self::build(info, device, queue, opts, uncaptured)
    }

    /// Use a trainer's own device and queue, so that buffers it created can be wrapped with
    /// [`Buffer::from_wgpu`] and ops run in its submission order. The device keeps its
    /// uncaptured-error handler; the crate's errors come back through error scopes. The device
    /// must come from this crate's wgpu version; a buffer from another `wgpu::Instance` than the
    /// device's is a misuse wgpu itself panics on.
    pub fn from_raw(
        info: wgpu::AdapterInfo,
        device: wgpu::Device,
        queue: wgpu::Queue,
        opts: &WgpuOptions,
    ) -> Result<Self> {
        Self::build(info, device, queue, opts, Arc::new(Mutex::new(Vec::new())))
    }

    fn build(
        info: wgpu::AdapterInfo,
        device: wgpu::Device,
        queue: wgpu::Queue,
        opts: &WgpuOptions,
        uncaptured: Arc<Mutex<Vec<String>>>,
    ) -> Result<Self> {
        let limits = device.limits();
        let align = u64::from(limits.min_storage_buffer_offset_alignment).max(256);
        let max = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let chunk_bytes = opts.max_chunk_bytes.unwrap_or(max).min(max) / align * align;
        if chunk_bytes == 0 {
            return Err(Error::InvalidArgument {
                op: "WgpuDevice::new",
                what: format!("max_chunk_bytes must be at least {align}"),
            });
        }
        Ok(WgpuDevice(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            info,
            limits,
            device,
            queue,
            chunk_bytes,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            uncaptured,
            ledger: Arc::default(),
        })))
    }

    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }

    /// The adapter this device runs on.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.0.info
    }

    /// The limits the device was opened with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.0.limits
    }

    /// The raw wgpu device and queue, for trainers that share them with the crate.
    pub fn raw(&self) -> (&wgpu::Device, &wgpu::Queue) {
        (&self.0.device, &self.0.queue)
    }

    /// The largest binding (in bytes) one dispatch of an op uses; larger work is chunked.
    pub fn chunk_bytes(&self) -> u64 {
        self.0.chunk_bytes
    }

    /// How many invocations fit when each keeps `slot_words` f32 of scratch and every `share`
    /// of them one slice of `slice_words` f32: the scratch and the slices each within one
    /// binding, both within `budget` bytes, and at least one. `op` and `what` name the buffers
    /// in the error where one invocation's scratch or one slice alone passes a binding.
    pub(crate) fn invocations_within(
        &self,
        op: &str,
        what: &str,
        slot_words: usize,
        slice_words: usize,
        share: usize,
        budget: usize,
    ) -> Result<usize> {
        let chunk = self.chunk_bytes() as usize;
        let (slot_bytes, slice_bytes) = (4 * slot_words, 4 * slice_words);
        if slot_bytes > chunk || slice_bytes > chunk {
            return Err(Error::LimitExceeded {
                what: format!("{op} on wgpu: {what} (one binding)"),
                requested: slot_bytes.max(slice_bytes) as u64,
                max: self.chunk_bytes(),
            });
        }
        let by_binding = (chunk / slot_bytes.max(1)).min(chunk / slice_bytes.max(1) * share);
        let by_budget = budget / (slot_bytes + slice_bytes.div_ceil(share)).max(1);
        Ok(by_binding.min(by_budget).max(1))
    }

    /// How a kernel whose invocations march samples, each a sequence of steps of `steps[k]`
    /// loop iterations (and `overhead` more per sample and dispatch), keeps within
    /// [`LOOP_BUDGET`] (see [`split_steps`]). A step alone past the budget is refused on
    /// llvmpipe, naming `op`; other adapters run it whole.
    pub(crate) fn split_samples(
        &self,
        op: &'static str,
        steps: &[usize],
        overhead: usize,
    ) -> Result<Split> {
        let longest = overhead + steps.iter().copied().max().unwrap_or(0);
        if longest > LOOP_BUDGET && self.adapter_info().name.contains("llvmpipe") {
            return Err(Error::Unsupported {
                op,
                backend: "wgpu (lavapipe)",
                what: format!(
                    "one step of a sample runs about {longest} loop iterations, past \
                     llvmpipe's limit of 65535 per invocation"
                ),
            });
        }
        Ok(split_steps(steps, overhead, LOOP_BUDGET))
    }

    pub(crate) fn describe(&self) -> String {
        let i = &self.0.info;
        format!("wgpu {} ({:?}, {})", i.name, i.backend, i.driver)
    }

    /// Run `f` inside validation and out-of-memory error scopes; either error, or one the
    /// uncaptured handler recorded meanwhile, becomes an `Err`.
    fn scoped<R>(&self, what: &str, f: impl FnOnce() -> R) -> Result<R> {
        let oom = self
            .0
            .device
            .push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self
            .0
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let r = f();
        let v = pollster::block_on(val.pop());
        let o = pollster::block_on(oom.pop());
        if let Some(e) = v.or(o) {
            return Err(Error::Wgpu(format!("{what}: {e}")));
        }
        let pending: Vec<String> = self
            .0
            .uncaptured
            .lock()
            .map(|mut v| v.drain(..).collect())
            .unwrap_or_default();
        if !pending.is_empty() {
            return Err(Error::Wgpu(format!("{what}: {}", pending.join("; "))));
        }
        Ok(r)
    }

    /// A new buffer, counted on the device's ledger for as long as the lease lives.
    fn new_buffer(&self, bytes: u64, usage: wgpu::BufferUsages) -> Result<(wgpu::Buffer, Lease)> {
        if bytes > self.0.limits.max_buffer_size {
            return Err(Error::LimitExceeded {
                what: format!("wgpu buffer size on {}", self.0.info.name),
                requested: bytes,
                max: self.0.limits.max_buffer_size,
            });
        }
        let buffer = self.scoped("create_buffer", || {
            self.0.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("trainkern"),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        })?;
        Ok((buffer, self.0.ledger.lease(bytes)))
    }

    pub(crate) fn ledger(&self) -> &Ledger {
        &self.0.ledger
    }

    fn storage_usage() -> wgpu::BufferUsages {
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
    }

    pub(crate) fn zeros(&self, bytes: usize) -> Result<WgpuStorage> {
        // Rounded up to whole words (copies and u32 bindings need it); wgpu zero-fills.
        let (buffer, lease) =
            self.new_buffer(round4(bytes as u64).max(4), Self::storage_usage())?;
        Ok(WgpuStorage {
            dev: self.clone(),
            buffer,
            byte_offset: 0,
            lease: Some(lease),
        })
    }

    pub(crate) fn upload<T: Element>(&self, data: &[T]) -> Result<WgpuStorage> {
        let mut s = self.zeros(std::mem::size_of_val(data))?;
        s.write(data)?;
        Ok(s)
    }

    pub(crate) fn copy(&self, src: &WgpuStorage, dst: &WgpuStorage, bytes: u64) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        if !bytes.is_multiple_of(4) && !dst.owned() {
            return Err(Error::Unsupported {
                op: "copy",
                backend: "wgpu",
                what: "a destination view whose byte length is not a multiple of 4".into(),
            });
        }
        self.scoped("copy", || {
            let mut enc = self.0.device.create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(
                &src.buffer,
                src.byte_offset,
                &dst.buffer,
                dst.byte_offset,
                round4(bytes),
            );
            self.0.queue.submit([enc.finish()]);
        })
    }

    /// Zeroes the first `bytes` (a multiple of 4) of `dst`, on the queue.
    pub(crate) fn clear(&self, dst: &WgpuStorage, bytes: u64) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        self.scoped("clear", || {
            let mut enc = self.0.device.create_command_encoder(&Default::default());
            enc.clear_buffer(&dst.buffer, dst.byte_offset, Some(round4(bytes)));
            self.0.queue.submit([enc.finish()]);
        })
    }

    pub(crate) fn synchronize(&self) -> Result<()> {
        self.0
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Wgpu(format!("poll: {e}")))?;
        Ok(())
    }

    fn pipeline(&self, module: &'static str, entry: &'static str) -> Result<wgpu::ComputePipeline> {
        if let Some(p) = lock(&self.0.pipelines)?.get(&(module, entry)) {
            return Ok(p.clone());
        }
        let mut modules = lock(&self.0.modules)?;
        if !modules.contains_key(module) {
            let source = crate::sources::wgsl(module).ok_or_else(|| Error::Unsupported {
                op: module,
                backend: "wgpu",
                what: "no shader of that name".into(),
            })?;
            let m = self.scoped(&format!("shader {module}.wgsl"), || {
                self.0
                    .device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(module),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    })
            })?;
            modules.insert(module, m);
        }
        let m = &modules[module];
        let p = self.scoped(&format!("pipeline {module}.wgsl:{entry}"), || {
            self.0
                .device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout: None,
                    module: m,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    cache: None,
                })
        })?;
        lock(&self.0.pipelines)?.insert((module, entry), p.clone());
        Ok(p)
    }

    /// Encode every dispatch of one op into one submission. Binding 0 is the dispatch's
    /// parameter block (a uniform), the storage ranges bind where each says.
    pub(crate) fn dispatch(
        &self,
        module: &'static str,
        entry: &'static str,
        work: &[Dispatch<'_>],
    ) -> Result<()> {
        if work.is_empty() {
            return Ok(());
        }
        let pipeline = self.pipeline(module, entry)?;
        let layout = pipeline.get_bind_group_layout(0);
        let align = u64::from(self.0.limits.min_uniform_buffer_offset_alignment).max(16);
        let slot = work
            .iter()
            .map(|w| round_up(w.params.len() as u64, align))
            .max()
            .unwrap_or(align);
        let (params, _lease) = self.new_buffer(
            slot * work.len() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        let mut bytes = vec![0u8; (slot * work.len() as u64) as usize];
        for (i, w) in work.iter().enumerate() {
            let at = i * slot as usize;
            bytes[at..at + w.params.len()].copy_from_slice(w.params);
        }
        let max_wg = self.0.limits.max_compute_workgroups_per_dimension.max(1);
        self.scoped(&format!("{module}.wgsl:{entry}"), || {
            self.0.queue.write_buffer(&params, 0, &bytes);
            let groups: Vec<wgpu::BindGroup> = work
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let mut entries = vec![wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &params,
                            offset: i as u64 * slot,
                            size: wgpu::BufferSize::new(w.params.len() as u64),
                        }),
                    }];
                    for r in &w.buffers {
                        entries.push(wgpu::BindGroupEntry {
                            binding: r.binding,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: r.buffer,
                                offset: r.offset,
                                size: wgpu::BufferSize::new(r.size),
                            }),
                        });
                    }
                    self.0.device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some(entry),
                        layout: &layout,
                        entries: &entries,
                    })
                })
                .collect();
            let mut enc = self.0.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(entry),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&pipeline);
                for (w, g) in work.iter().zip(&groups) {
                    let n = w.invocations.div_ceil(u64::from(WORKGROUP_SIZE));
                    if n == 0 {
                        continue;
                    }
                    let x = n.min(u64::from(max_wg)) as u32;
                    let y = n.div_ceil(u64::from(x)) as u32;
                    pass.set_bind_group(0, g, &[]);
                    pass.dispatch_workgroups(x, y, 1);
                }
            }
            self.0.queue.submit([enc.finish()]);
        })
    }

    /// Split `len` elements of `elem_bytes` each into chunks that bind within the limit. Every
    /// chunk starts at a multiple of the storage offset alignment (so 16-bit chunks start on a
    /// word) and holds fewer than 2^31 elements (shaders index in u32).
    pub(crate) fn chunks(&self, len: usize, elem_bytes: usize) -> Vec<(usize, usize)> {
        let align = (self.0.limits.min_storage_buffer_offset_alignment as usize).max(256);
        let multiple = align / elem_bytes;
        let per = (self.0.chunk_bytes as usize / elem_bytes).min(1 << 30) / multiple * multiple;
        let per = per.max(multiple);
        (0..len)
            .step_by(per)
            .map(|start| (start, per.min(len - start)))
            .collect()
    }
}

/// A u64 as the `[low, high]` u32 pair the shaders take (WGSL has no 64-bit integers).
pub(crate) fn split_u64(x: u64) -> [u32; 2] {
    [x as u32, (x >> 32) as u32]
}

/// A whole buffer bound at `binding`, refused with a clear error past one binding (`op` and
/// `what` name it).
pub(crate) fn bind_whole<'a, T: Element>(
    b: &'a crate::Buffer<T>,
    binding: u32,
    op: &str,
    what: &str,
) -> Result<Range<'a>> {
    let crate::buffer::Storage::Wgpu(s) = &b.storage else {
        return Err(Error::InvalidArgument {
            op: "wgpu",
            what: format!("internal: {op}: {what} is not on wgpu"),
        });
    };
    let bytes = (b.len() * T::DTYPE.size()) as u64;
    if bytes > s.dev.chunk_bytes() {
        return Err(Error::LimitExceeded {
            what: format!("{op} on wgpu: bytes of {what} (one binding)"),
            requested: bytes,
            max: s.dev.chunk_bytes(),
        });
    }
    Ok(s.range(0, b.len().max(1), T::DTYPE.size()).at(binding))
}

/// One dispatch of an op: its parameter bytes, its storage ranges and how many invocations.
pub(crate) struct Dispatch<'a> {
    pub params: &'a [u8],
    pub buffers: Vec<Range<'a>>,
    pub invocations: u64,
}

/// A byte range of a buffer, bound as `array<u32>` at `binding` of group 0.
#[derive(Clone, Copy)]
pub(crate) struct Range<'a> {
    pub binding: u32,
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

impl Range<'_> {
    /// The same range at another binding.
    pub(crate) fn at(self, binding: u32) -> Self {
        Range { binding, ..self }
    }
}

/// Device memory of a wgpu [`Buffer`]: an owned buffer or a caller's, at a byte offset.
pub struct WgpuStorage {
    pub(crate) dev: WgpuDevice,
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) byte_offset: u64,
    /// Our own buffers' bytes on the device's ledger; none for a caller's buffer (or a view
    /// into one), which is also how a buffer is known to be ours: ours are padded to whole
    /// words, so a tail write may touch the padding.
    lease: Option<Lease>,
}

impl WgpuStorage {
    fn owned(&self) -> bool {
        self.lease.is_some()
    }

    /// The bytes `[first, first + count)` of elements of `elem_bytes`, rounded out to whole
    /// words, as a binding range (at binding 1; see [`Range::at`]).
    pub(crate) fn range(&self, first: usize, count: usize, elem_bytes: usize) -> Range<'_> {
        Range {
            binding: 1,
            buffer: &self.buffer,
            offset: self.byte_offset + (first * elem_bytes) as u64,
            size: round4((count * elem_bytes) as u64).max(4),
        }
    }

    pub(crate) fn download<T: Element>(&self, len: usize) -> Result<Vec<T>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let dev = &self.dev;
        let bytes = round4((len * T::DTYPE.size()) as u64);
        let (staging, _lease) = dev.new_buffer(
            bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        dev.scoped("download", || {
            let mut enc = dev.0.device.create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(&self.buffer, self.byte_offset, &staging, 0, bytes);
            dev.0.queue.submit([enc.finish()]);
        })?;
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        dev.synchronize()?;
        rx.recv()
            .map_err(|e| Error::Wgpu(format!("download: map callback lost: {e}")))?
            .map_err(|e| Error::Wgpu(format!("download: map failed: {e}")))?;
        let out = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Wgpu(format!("download: {e}")))?;
            let mut v: Vec<T> = bytemuck::pod_collect_to_vec(&view[..]);
            v.truncate(len);
            v
        };
        staging.unmap();
        Ok(out)
    }

    pub(crate) fn write<T: Element>(&mut self, data: &[T]) -> Result<()> {
        let raw: &[u8] = bytemuck::cast_slice(data);
        if raw.is_empty() {
            return Ok(());
        }
        let whole = raw.len() / 4 * 4;
        let mut tail = Vec::new();
        if whole < raw.len() {
            // A 16-bit tail shares a word with the element after it: keep that half unless the
            // buffer is ours and the half is padding.
            let mut word = [0u8; 4];
            if !self.owned() {
                let at = WgpuStorage {
                    dev: self.dev.clone(),
                    buffer: self.buffer.clone(),
                    byte_offset: self.byte_offset + whole as u64,
                    lease: None,
                };
                let old: Vec<u32> = at.download(1)?;
                word = old[0].to_le_bytes();
            }
            word[..raw.len() - whole].copy_from_slice(&raw[whole..]);
            tail = word.to_vec();
        }
        let dev = &self.dev;
        dev.scoped("write", || {
            if whole > 0 {
                dev.0
                    .queue
                    .write_buffer(&self.buffer, self.byte_offset, &raw[..whole]);
            }
            if !tail.is_empty() {
                dev.0
                    .queue
                    .write_buffer(&self.buffer, self.byte_offset + whole as u64, &tail);
            }
            dev.0.queue.submit([]);
        })
    }
}

impl<T: Element> Buffer<T> {
    /// View `len` elements of a caller's `wgpu::Buffer`, starting `byte_offset` bytes in, without
    /// copying. The buffer must have been created on `dev`'s wgpu device (see
    /// [`WgpuDevice::raw`]) with `STORAGE`, `COPY_SRC` and `COPY_DST` usage; `byte_offset` must be a
    /// multiple of the adapter's storage offset alignment (256 on most), and the range rounded up
    /// to whole 4-byte words must lie inside the buffer. Ops write only the view's elements.
    pub fn from_wgpu(
        dev: &WgpuDevice,
        buffer: wgpu::Buffer,
        byte_offset: u64,
        len: usize,
    ) -> Result<Self> {
        const OP: &str = "Buffer::from_wgpu";
        let need = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        if !buffer.usage().contains(need) {
            return Err(Error::InvalidArgument {
                op: OP,
                what: format!(
                    "buffer usage {:?} lacks STORAGE | COPY_SRC | COPY_DST",
                    buffer.usage()
                ),
            });
        }
        let align = u64::from(dev.0.limits.min_storage_buffer_offset_alignment);
        if !byte_offset.is_multiple_of(align) {
            return Err(Error::InvalidArgument {
                op: OP,
                what: format!("byte_offset {byte_offset} is not a multiple of {align}"),
            });
        }
        let end = (len as u64)
            .checked_mul(T::DTYPE.size() as u64)
            .and_then(|b| byte_offset.checked_add(round4(b)));
        match end {
            Some(end) if end <= buffer.size() => {}
            _ => {
                return Err(Error::Shape {
                    op: OP,
                    arg: "len",
                    expected: format!("a range within the buffer's {} bytes", buffer.size()),
                    got: format!("{len} elements of {} at byte {byte_offset}", T::DTYPE),
                });
            }
        }
        Ok(Buffer {
            len,
            storage: Storage::Wgpu(WgpuStorage {
                dev: dev.clone(),
                buffer,
                byte_offset,
                lease: None,
            }),
        })
    }

    /// The wgpu buffer and byte offset behind a wgpu buffer.
    pub fn as_wgpu(&self) -> Option<(&wgpu::Buffer, u64)> {
        match &self.storage {
            Storage::Wgpu(s) => Some((&s.buffer, s.byte_offset)),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| Error::Wgpu("a cache lock was poisoned by an earlier panic".into()))
}

fn round4(x: u64) -> u64 {
    round_up(x, 4)
}

fn round_up(x: u64, m: u64) -> u64 {
    x.div_ceil(m) * m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every split runs each step once, in order, in groups within the budget unless a step
    /// alone passes it; whole samples share a window only when they fit together.
    #[test]
    fn a_sample_split_runs_every_step_once_in_order() {
        let cases: [&[usize]; 5] = [
            &[10, 20, 30],
            &[22_000, 5_000, 33_500, 4_000, 300],
            &[40_000, 40_000, 40_000, 40_000],
            &[60_000, 100, 100],
            &[100, 100, 100, 100, 100, 100],
        ];
        for steps in cases {
            for budget in [200, 1_000, 50_000, 1_000_000] {
                let Split {
                    groups,
                    samples: nj,
                } = split_steps(steps, 16, budget);
                assert!(nj >= 1);
                let mut next = 0;
                for g in &groups {
                    assert_eq!(g.start, next, "{steps:?} in {budget}");
                    assert!(g.end > g.start);
                    next = g.end;
                    let loops = 16 + steps[g.clone()].iter().sum::<usize>();
                    assert!(
                        loops <= budget || g.len() == 1,
                        "{steps:?} in {budget}: {loops}"
                    );
                }
                assert_eq!(next, steps.len());
                let whole = 16 + steps.iter().sum::<usize>();
                if groups.len() > 1 {
                    assert!(whole > budget);
                    assert_eq!(nj, 1);
                } else {
                    assert!(whole > budget || nj * whole <= budget);
                }
            }
        }
    }
}
