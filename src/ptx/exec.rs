//! The interpreter: a grid of blocks, each a set of threads in warps of 32, run on the host.
//!
//! Blocks run in parallel (rayon). Within a block, each thread runs on its own until it exits,
//! reaches `bar.sync`, or reaches a warp-collective instruction (`shfl.sync`, `vote.sync`); a
//! barrier completes when every thread of the block waits at it, a collective when every lane
//! its mask names waits at the same instruction. When nothing can move, the block is deadlocked
//! and that is an error. Threads of a warp are not run in lockstep (the independent thread
//! scheduling of Volta and later), so code that relies on implicit warp synchrony is caught by
//! the shared-memory race check rather than passing by luck.

use super::float;
use super::ir::*;
use super::mem::{DYNAMIC_SHARED_AT, Global, LOCAL_WINDOW, SHARED_WINDOW, WINDOW_SIZE};

/// Grid and block dimensions.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    /// Bytes of dynamic shared memory per block (after the module's static `.shared` ones).
    pub shared: u32,
}

/// An error inside a kernel: the instruction's line, the block and thread, and what happened.
#[derive(Clone, Debug)]
pub struct Fault {
    pub line: u32,
    pub block: [u32; 3],
    pub thread: [u32; 3],
    pub what: String,
}

struct Frame {
    func: usize,
    pc: usize,
    regs: Vec<u64>,
    init: Vec<bool>,
    params: Vec<u8>,
    local: Vec<u8>,
    /// Where the caller wants this frame's return parameters.
    ret_to: Vec<Slot>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Run,
    /// Waiting at `bar.sync` (barrier id, line).
    Bar(u32, u32),
    /// Waiting at a warp collective (function, pc).
    Coll(usize, usize),
    Exited,
}

struct Thread {
    frames: Vec<Frame>,
    state: State,
    tid: [u32; 3],
    lin: u32,
}

struct Shared {
    /// The static variables' bytes, then the dynamic array's (at `DYNAMIC_SHARED_AT`).
    bytes: Vec<u8>,
    static_len: usize,
    /// 1 + the linear id of the last thread that wrote each byte (0: none).
    writer: Vec<u32>,
    /// The barrier epoch of that write.
    written_in: Vec<u32>,
    epoch: u32,
}

struct Ctx<'a> {
    m: &'a Module,
    params: &'a [u8],
    global: &'a Global<'a>,
    dims: Dims,
    ctaid: [u32; 3],
    nthreads: u32,
}

type R<T> = Result<T, String>;

/// Run `entry` over the grid. `params` is the kernel parameter buffer laid out as the entry's
/// `.param` list says.
pub fn run(
    m: &Module,
    entry: usize,
    dims: Dims,
    params: &[u8],
    global: &Global,
) -> Result<(), Fault> {
    use rayon::prelude::*;
    let [gx, gy, gz] = dims.grid;
    let blocks = gx as u64 * gy as u64 * gz as u64;
    (0..blocks).into_par_iter().try_for_each(|b| {
        let ctaid = [
            (b % gx as u64) as u32,
            ((b / gx as u64) % gy as u64) as u32,
            (b / (gx as u64 * gy as u64)) as u32,
        ];
        let [bx, by, bz] = dims.block;
        let cx = Ctx {
            m,
            params,
            global,
            dims,
            ctaid,
            nthreads: bx * by * bz,
        };
        cx.block(entry)
    })
}

fn fresh_frame(m: &Module, func: usize, params: Vec<u8>, ret_to: Vec<Slot>) -> Frame {
    let f = &m.funcs[func];
    let mut params = params;
    params.resize(f.param_bytes as usize, 0);
    Frame {
        func,
        pc: 0,
        regs: vec![0; f.regs.len()],
        init: vec![false; f.regs.len()],
        params,
        local: vec![0; f.local_bytes as usize],
        ret_to,
    }
}

impl Ctx<'_> {
    fn block(&self, entry: usize) -> Result<(), Fault> {
        let [bx, by, _] = self.dims.block;
        let mut threads: Vec<Thread> = (0..self.nthreads)
            .map(|lin| Thread {
                frames: vec![fresh_frame(self.m, entry, self.params.to_vec(), Vec::new())],
                state: State::Run,
                tid: [lin % bx, (lin / bx) % by, lin / (bx * by)],
                lin,
            })
            .collect();
        let sb = self.m.shared_bytes as usize + self.dims.shared as usize;
        let mut sh = Shared {
            static_len: self.m.shared_bytes as usize,
            bytes: vec![0; sb],
            writer: vec![0; sb],
            written_in: vec![0; sb],
            epoch: 1,
        };
        loop {
            for t in threads.iter_mut().filter(|t| t.state == State::Run) {
                self.run_thread(t, &mut sh).map_err(|(line, what)| Fault {
                    line,
                    block: self.ctaid,
                    thread: t.tid,
                    what,
                })?;
            }
            if threads.iter().all(|t| t.state == State::Exited) {
                return Ok(());
            }
            let mut moved = self.release_barrier(&mut threads, &mut sh)?;
            moved |= self.run_collectives(&mut threads)?;
            if !moved {
                return Err(self.deadlock(&threads));
            }
        }
    }

    fn fault(&self, t: &Thread, line: u32, what: String) -> Fault {
        Fault {
            line,
            block: self.ctaid,
            thread: t.tid,
            what,
        }
    }

    fn release_barrier(&self, threads: &mut [Thread], sh: &mut Shared) -> Result<bool, Fault> {
        let waiting: Vec<&Thread> = threads
            .iter()
            .filter(|t| matches!(t.state, State::Bar(..)))
            .collect();
        if waiting.is_empty() {
            return Ok(false);
        }
        let all_there = threads.iter().all(|t| matches!(t.state, State::Bar(..)));
        if !all_there {
            // Some thread is elsewhere: at a collective (which may still complete) or exited.
            if let Some(gone) = threads.iter().find(|t| t.state == State::Exited) {
                let w = waiting[0];
                let State::Bar(_, line) = w.state else {
                    unreachable!()
                };
                return Err(self.fault(
                    w,
                    line,
                    format!(
                        "deadlock: bar.sync waits for thread {:?}, which has exited",
                        gone.tid
                    ),
                ));
            }
            return Ok(false);
        }
        let State::Bar(id0, line0) = waiting[0].state else {
            unreachable!()
        };
        if let Some(other) = threads
            .iter()
            .find(|t| !matches!(t.state, State::Bar(id, _) if id == id0))
        {
            return Err(self.fault(
                other,
                line0,
                "deadlock: threads of the block wait at different barriers".into(),
            ));
        }
        for t in threads.iter_mut() {
            t.state = State::Run;
            if let Some(f) = t.frames.last_mut() {
                f.pc += 1;
            }
        }
        sh.epoch += 1;
        Ok(true)
    }

    fn run_collectives(&self, threads: &mut [Thread]) -> Result<bool, Fault> {
        let mut moved = false;
        let warps = self.nthreads.div_ceil(32);
        for w in 0..warps {
            let base = (w * 32) as usize;
            let end = ((w + 1) * 32).min(self.nthreads) as usize;
            let Some(first) = (base..end).find(|&i| matches!(threads[i].state, State::Coll(..)))
            else {
                continue;
            };
            let State::Coll(func, pc) = threads[first].state else {
                unreachable!()
            };
            let inst = &self.m.funcs[func].insts[pc];
            let mask = {
                let t = &threads[first];
                let op_mask = match &inst.op {
                    Op::Shfl { mask, .. } | Op::Vote { mask, .. } => mask,
                    _ => unreachable!(),
                };
                self.value(t, op_mask)
                    .map_err(|e| self.fault(t, inst.line, e))? as u32
            };
            // Every lane the mask names must exist, be alive, and wait here.
            let mut ready = true;
            for lane in 0..32u32 {
                if mask & (1 << lane) == 0 {
                    continue;
                }
                let i = base + lane as usize;
                let t = &threads[first];
                if i >= end {
                    return Err(self.fault(
                        t,
                        inst.line,
                        format!("membermask {mask:#010x} names lane {lane}, which does not exist in this block"),
                    ));
                }
                match threads[i].state {
                    State::Exited => {
                        return Err(self.fault(
                            t,
                            inst.line,
                            format!("membermask {mask:#010x} names lane {lane}, which has exited"),
                        ));
                    }
                    State::Coll(f2, p2) if f2 == func && p2 == pc => {}
                    _ => ready = false,
                }
            }
            let lane_first = (first - base) as u32;
            if mask & (1 << lane_first) == 0 {
                return Err(self.fault(
                    &threads[first],
                    inst.line,
                    format!(
                        "membermask {mask:#010x} does not include the executing lane {lane_first}"
                    ),
                ));
            }
            if !ready {
                continue;
            }
            self.collective(&mut threads[base..end], mask, inst)?;
            for (lane, t) in threads[base..end].iter_mut().enumerate() {
                if mask & (1 << lane) != 0 {
                    t.state = State::Run;
                    if let Some(f) = t.frames.last_mut() {
                        f.pc += 1;
                    }
                }
            }
            moved = true;
        }
        Ok(moved)
    }

    fn collective(&self, warp: &mut [Thread], mask: u32, inst: &Inst) -> Result<(), Fault> {
        let lanes: Vec<usize> = (0..warp.len()).filter(|l| mask & (1 << l) != 0).collect();
        match &inst.op {
            Op::Shfl {
                mode,
                dst,
                pdst,
                a,
                b,
                c,
                ..
            } => {
                let mut vals = vec![0u64; warp.len()];
                for &l in &lanes {
                    vals[l] = self
                        .value(&warp[l], a)
                        .map_err(|e| self.fault(&warp[l], inst.line, e))?;
                }
                let mut out = Vec::new();
                for &l in &lanes {
                    let t = &warp[l];
                    let bv = self.value(t, b).map_err(|e| self.fault(t, inst.line, e))? as u32 & 31;
                    let cv = self.value(t, c).map_err(|e| self.fault(t, inst.line, e))? as u32;
                    let (clamp, seg) = (cv & 31, (cv >> 8) & 31);
                    let lane = l as u32;
                    let max_lane = (lane & seg) | (clamp & !seg);
                    let min_lane = lane & seg;
                    let (j, ok) = match mode {
                        ShflMode::Up => {
                            let j = lane as i32 - bv as i32;
                            (j, j >= max_lane as i32)
                        }
                        ShflMode::Down => {
                            let j = (lane + bv) as i32;
                            (j, j <= max_lane as i32)
                        }
                        ShflMode::Bfly => {
                            let j = (lane ^ bv) as i32;
                            (j, j <= max_lane as i32)
                        }
                        ShflMode::Idx => {
                            let j = (min_lane | (bv & !seg)) as i32;
                            (j, j <= max_lane as i32)
                        }
                    };
                    let src = if ok { j as u32 } else { lane };
                    if src as usize >= warp.len() || mask & (1 << src) == 0 {
                        return Err(self.fault(
                            t,
                            inst.line,
                            format!("shfl.sync reads lane {src}, which is not in membermask {mask:#010x}"),
                        ));
                    }
                    out.push((l, vals[src as usize] & 0xffff_ffff, ok));
                }
                for (l, v, ok) in out {
                    let f = top(&mut warp[l]);
                    set(f, *dst, v);
                    if let Some(p) = pdst {
                        set(f, *p, ok as u64);
                    }
                }
            }
            Op::Vote {
                mode,
                dst,
                a,
                negate,
                ..
            } => {
                let mut ballot = 0u32;
                for &l in &lanes {
                    let p = self
                        .value(&warp[l], a)
                        .map_err(|e| self.fault(&warp[l], inst.line, e))?
                        & 1
                        == 1;
                    if p != *negate {
                        ballot |= 1 << l;
                    }
                }
                let v = match mode {
                    VoteMode::Ballot => ballot as u64,
                    VoteMode::All => (ballot == mask) as u64,
                    VoteMode::Any => (ballot != 0) as u64,
                    VoteMode::Uni => (ballot == 0 || ballot == mask) as u64,
                };
                for &l in &lanes {
                    set(top(&mut warp[l]), *dst, v);
                }
            }
            _ => unreachable!(),
        }
        Ok(())
    }

    fn deadlock(&self, threads: &[Thread]) -> Fault {
        let t = threads
            .iter()
            .find(|t| t.state != State::Exited)
            .unwrap_or(&threads[0]);
        let (line, what) = match t.state {
            State::Bar(_, line) => (line, "deadlock: bar.sync can never complete (other threads wait at a warp collective)".to_string()),
            State::Coll(f, pc) => (
                self.m.funcs[f].insts[pc].line,
                "deadlock: a warp collective waits for lanes that never arrive (they are at a barrier or another collective)".to_string(),
            ),
            _ => (0, "deadlock".to_string()),
        };
        self.fault(t, line, what)
    }

    fn special(&self, t: &Thread, s: Special) -> u64 {
        let d = |v: [u32; 3], i: u8| v[i as usize] as u64;
        match s {
            Special::Tid(i) => d(t.tid, i),
            Special::Ntid(i) => d(self.dims.block, i),
            Special::Ctaid(i) => d(self.ctaid, i),
            Special::Nctaid(i) => d(self.dims.grid, i),
            Special::Laneid => (t.lin % 32) as u64,
            Special::Warpid => (t.lin / 32) as u64,
            Special::Nwarpid => self.nthreads.div_ceil(32) as u64,
            Special::WarpSize => 32,
            Special::DynamicSmemSize => u64::from(self.dims.shared),
        }
    }

    fn value(&self, t: &Thread, op: &Operand) -> R<u64> {
        let f = t.frames.last().ok_or("no frame")?;
        match op {
            Operand::Reg(r) => {
                let r = *r as usize;
                if !f.init[r] {
                    return Err(format!(
                        "read of register {} before any write",
                        self.m.funcs[f.func].regs[r].name
                    ));
                }
                Ok(f.regs[r])
            }
            Operand::Imm(v) => Ok(*v),
            Operand::Special(s) => Ok(self.special(t, *s)),
            Operand::VarAddr(_, off) => Ok(*off),
        }
    }

    /// Run one thread until it exits or must wait for others.
    fn run_thread(&self, t: &mut Thread, sh: &mut Shared) -> Result<(), (u32, String)> {
        let mut budget: u64 = 1 << 32;
        loop {
            budget -= 1;
            if budget == 0 {
                let line = t
                    .frames
                    .last()
                    .map_or(0, |f| self.m.funcs[f.func].insts[f.pc].line);
                let what = "2^32 instructions without a barrier or exit: an endless loop?";
                return Err((line, what.into()));
            }
            let (func, pc) = {
                let f = t.frames.last().ok_or((0, "no frame".to_string()))?;
                (f.func, f.pc)
            };
            let inst = &self.m.funcs[func].insts[pc];
            let line = inst.line;
            if let Some((p, neg)) = inst.guard {
                let v = self.value(t, &Operand::Reg(p)).map_err(|e| (line, e))?;
                if (v & 1 == 1) == neg {
                    top(t).pc += 1;
                    continue;
                }
            }
            match &inst.op {
                Op::Bar { id } => {
                    let id = self.value(t, id).map_err(|e| (line, e))? as u32;
                    t.state = State::Bar(id, line);
                    return Ok(());
                }
                Op::Shfl { .. } | Op::Vote { .. } => {
                    t.state = State::Coll(func, pc);
                    return Ok(());
                }
                Op::Exit => {
                    t.state = State::Exited;
                    return Ok(());
                }
                Op::Ret => {
                    let done = t
                        .frames
                        .pop()
                        .ok_or((line, "ret with no frame".to_string()))?;
                    match t.frames.last_mut() {
                        None => {
                            t.state = State::Exited;
                            return Ok(());
                        }
                        Some(caller) => {
                            let callee = &self.m.funcs[done.func];
                            for (p, to) in callee.rets.iter().zip(&done.ret_to) {
                                let n = p.slot.size.min(to.size) as usize;
                                let src = &done.params[p.slot.offset as usize..][..n];
                                caller.params[to.offset as usize..][..n].copy_from_slice(src);
                            }
                            caller.pc += 1;
                        }
                    }
                    continue;
                }
                Op::Call {
                    func: callee,
                    rets,
                    args,
                } => {
                    let cf = &self.m.funcs[*callee];
                    let caller = t.frames.last().ok_or((line, "no frame".to_string()))?;
                    let mut params = vec![0u8; cf.param_bytes as usize];
                    for (p, from) in cf.params.iter().zip(args) {
                        let n = p.slot.size.min(from.size) as usize;
                        params[p.slot.offset as usize..][..n]
                            .copy_from_slice(&caller.params[from.offset as usize..][..n]);
                    }
                    if t.frames.len() >= 64 {
                        return Err((line, "call depth exceeds 64 frames".into()));
                    }
                    t.frames
                        .push(fresh_frame(self.m, *callee, params, rets.clone()));
                    continue;
                }
                Op::Bra { target } => {
                    top(t).pc = *target;
                    continue;
                }
                op => self.exec(t, sh, op).map_err(|e| (line, e))?,
            }
            top(t).pc += 1;
        }
    }

    /// Resolve an address to (space, address within it).
    fn resolve(&self, t: &Thread, space: Space, a: &Addr) -> R<(Space, u64)> {
        let (base, var_space) = match a.base {
            AddrBase::Reg(r) => (self.value(t, &Operand::Reg(r))?, None),
            AddrBase::Imm(v) => (v, None),
            AddrBase::Var(s, off) => (off, Some(s)),
        };
        let addr = base.wrapping_add(a.offset as u64);
        let space = match (space, var_space) {
            (Space::Generic, Some(s)) => s,
            (Space::Generic, None) => {
                if (SHARED_WINDOW..SHARED_WINDOW + WINDOW_SIZE).contains(&addr) {
                    return Ok((Space::Shared, addr - SHARED_WINDOW));
                }
                if (LOCAL_WINDOW..LOCAL_WINDOW + WINDOW_SIZE).contains(&addr) {
                    return Ok((Space::Local, addr - LOCAL_WINDOW));
                }
                Space::Global
            }
            (s, _) => s,
        };
        Ok((space, addr))
    }

    fn load(
        &self,
        t: &Thread,
        sh: &mut Shared,
        space: Space,
        a: &Addr,
        size: u64,
        k: u64,
    ) -> R<u64> {
        let (space, addr) = self.resolve(t, space, a)?;
        let addr = addr.wrapping_add(k * size);
        match space {
            Space::Global | Space::Generic | Space::Const => self.global.load(addr, size),
            Space::Shared => {
                let r = shared_range(sh, addr, size)?;
                for b in r.clone() {
                    let w = sh.writer[b];
                    if w != 0 && w != t.lin + 1 && sh.written_in[b] == sh.epoch {
                        return Err(format!(
                            "data race: shared byte {b} read by thread {:?} was written by thread {} since the last barrier",
                            t.tid,
                            w - 1
                        ));
                    }
                }
                Ok(le(&sh.bytes[r]))
            }
            Space::Local => {
                let f = t.frames.last().ok_or("no frame")?;
                Ok(le(frame_range(&f.local, addr, size, "local")?))
            }
            Space::Param => {
                let f = t.frames.last().ok_or("no frame")?;
                Ok(le(frame_range(&f.params, addr, size, "param")?))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn store(
        &self,
        t: &mut Thread,
        sh: &mut Shared,
        space: Space,
        a: &Addr,
        size: u64,
        k: u64,
        v: u64,
    ) -> R<()> {
        let (space, addr) = self.resolve(t, space, a)?;
        let addr = addr.wrapping_add(k * size);
        let bytes = v.to_le_bytes();
        match space {
            Space::Global | Space::Generic => self.global.store(addr, size, v),
            Space::Const => Err("store to .const".into()),
            Space::Shared => {
                let r = shared_range(sh, addr, size)?;
                for b in r.clone() {
                    sh.writer[b] = t.lin + 1;
                    sh.written_in[b] = sh.epoch;
                }
                sh.bytes[r].copy_from_slice(&bytes[..size as usize]);
                Ok(())
            }
            Space::Local => {
                let f = top(t);
                let n = f.local.len();
                frame_range_mut(&mut f.local, n, addr, size, "local")?
                    .copy_from_slice(&bytes[..size as usize]);
                Ok(())
            }
            Space::Param => {
                let f = top(t);
                let n = f.params.len();
                frame_range_mut(&mut f.params, n, addr, size, "param")?
                    .copy_from_slice(&bytes[..size as usize]);
                Ok(())
            }
        }
    }

    fn exec(&self, t: &mut Thread, sh: &mut Shared, op: &Op) -> R<()> {
        let v = |t: &Thread, o: &Operand| self.value(t, o);
        match op {
            Op::Ld {
                space,
                ty,
                dst,
                addr,
            } => {
                let size = ty.bytes() as u64;
                for (k, d) in dst.iter().enumerate() {
                    let raw = self.load(t, sh, *space, addr, size, k as u64)?;
                    let val = if ty.signed() { ty.int(raw) as u64 } else { raw };
                    set(top(t), *d, val);
                }
            }
            Op::St {
                space,
                ty,
                src,
                addr,
            } => {
                let size = ty.bytes() as u64;
                for (k, s) in src.iter().enumerate() {
                    let val = v(t, s)? & ty.mask();
                    self.store(t, sh, *space, addr, size, k as u64, val)?;
                }
            }
            Op::Mov { ty, dst, src } => {
                let val = v(t, src)? & ty.mask();
                set(top(t), *dst, val);
            }
            Op::Pack { ty, dst, src } => {
                let lane = ty.bits() / src.len() as u32;
                let mut out = 0u64;
                for (i, s) in src.iter().enumerate() {
                    out |= (v(t, s)? & ((1u64 << lane) - 1)) << (lane * i as u32);
                }
                set(top(t), *dst, out);
            }
            Op::Unpack { ty, dst, src } => {
                let lane = ty.bits() / dst.len() as u32;
                let val = v(t, src)?;
                for (i, d) in dst.iter().enumerate() {
                    set(
                        top(t),
                        *d,
                        (val >> (lane * i as u32)) & ((1u64 << lane) - 1),
                    );
                }
            }
            Op::Cvt {
                dty,
                sty,
                rnd,
                sat,
                ftz,
                dst,
                src,
            } => {
                let out = cvt(*dty, *sty, *rnd, *sat, *ftz, v(t, src)?);
                set(top(t), *dst, out);
            }
            Op::Cvta {
                to_generic,
                space,
                dst,
                src,
            } => {
                let a = v(t, src)?;
                let window = match space {
                    Space::Shared => SHARED_WINDOW,
                    Space::Local => LOCAL_WINDOW,
                    _ => 0,
                };
                let out = if *to_generic {
                    a + window
                } else {
                    a.wrapping_sub(window)
                };
                set(top(t), *dst, out);
            }
            Op::Int {
                op,
                ty,
                mode,
                sat,
                dst,
                a,
                b,
                c,
            } => {
                let c = match c {
                    Some(c) => Some(v(t, c)?),
                    None => None,
                };
                let out = int_op(*op, *ty, *mode, *sat, v(t, a)?, v(t, b)?, c)?;
                set(top(t), *dst, out);
            }
            Op::Un { op, ty, dst, a } => {
                let x = v(t, a)?;
                let w = ty.bits();
                let m = ty.mask();
                let out = match op {
                    UnOp::Neg => x.wrapping_neg() & m,
                    UnOp::Abs => (ty.int(x).unsigned_abs() as u64) & m,
                    UnOp::Not => !x & m,
                    UnOp::Popc => (x & m).count_ones() as u64,
                    UnOp::Clz => ((x & m).leading_zeros() - (64 - w)) as u64,
                    UnOp::Brev => (x & m).reverse_bits() >> (64 - w),
                };
                set(top(t), *dst, out);
            }
            Op::Bfe { ty, dst, a, b, c } => {
                let x = v(t, a)?;
                let (pos, len) = ((v(t, b)? & 0xff) as u32, (v(t, c)? & 0xff) as u32);
                let msb = ty.bits() - 1;
                let sbit = if ty.signed() && len != 0 {
                    (x >> (pos + len - 1).min(msb)) & 1
                } else {
                    0
                };
                let mut out = 0u64;
                for i in 0..=msb {
                    let bit = if i < len && pos + i <= msb {
                        (x >> (pos + i)) & 1
                    } else {
                        sbit
                    };
                    out |= bit << i;
                }
                set(top(t), *dst, out);
            }
            Op::Bfi {
                ty,
                dst,
                a,
                b,
                c,
                d,
            } => {
                let (x, mut out) = (v(t, a)?, v(t, b)? & ty.mask());
                let (pos, len) = ((v(t, c)? & 0xff) as u32, (v(t, d)? & 0xff) as u32);
                let msb = ty.bits() - 1;
                for i in 0..len {
                    if pos + i > msb {
                        break;
                    }
                    out = (out & !(1 << (pos + i))) | (((x >> i) & 1) << (pos + i));
                }
                set(top(t), *dst, out);
            }
            Op::Float {
                op,
                ty,
                rnd,
                ftz,
                sat,
                approx,
                dst,
                a,
                b,
            } => {
                let out = float_op(*op, *ty, *rnd, *ftz, *sat, *approx, v(t, a)?, v(t, b)?);
                set(top(t), *dst, out);
            }
            Op::Fma {
                ty,
                rnd,
                ftz,
                sat,
                dst,
                a,
                b,
                c,
            } => {
                let out = fma_op(*ty, *rnd, *ftz, *sat, v(t, a)?, v(t, b)?, v(t, c)?);
                set(top(t), *dst, out);
            }
            Op::FUn {
                op,
                ty,
                rnd,
                ftz,
                approx,
                dst,
                a,
            } => {
                let out = funary(*op, *ty, *rnd, *ftz, *approx, v(t, a)?);
                set(top(t), *dst, out);
            }
            Op::Setp {
                cmp,
                ty,
                ftz,
                p,
                q,
                a,
                b,
                combine,
            } => {
                let mut r = compare(*cmp, *ty, *ftz, v(t, a)?, v(t, b)?);
                let mut nr = !r;
                if let Some((bop, c, neg)) = combine {
                    let cv = (v(t, c)? & 1 == 1) != *neg;
                    let f = |x: bool| match bop {
                        BoolOp::And => x && cv,
                        BoolOp::Or => x || cv,
                        BoolOp::Xor => x ^ cv,
                    };
                    (r, nr) = (f(r), f(nr));
                }
                set(top(t), *p, r as u64);
                if let Some(q) = q {
                    set(top(t), *q, nr as u64);
                }
            }
            Op::Selp { ty, dst, a, b, p } => {
                let out = if v(t, p)? & 1 == 1 {
                    v(t, a)?
                } else {
                    v(t, b)?
                };
                set(top(t), *dst, out & ty.mask());
            }
            Op::Atom {
                space,
                op,
                ty,
                dst,
                addr,
                b,
                c,
            } => {
                let bv = v(t, b)?;
                let cv = match c {
                    Some(c) => v(t, c)?,
                    None => 0,
                };
                let size = ty.bytes() as u64;
                let f = |old: u64| atom_apply(*op, *ty, old, bv, cv);
                let (space, a) = self.resolve(t, *space, addr)?;
                let old = match space {
                    Space::Shared => {
                        let r = shared_range(sh, a, size)?;
                        let old = le(&sh.bytes[r.clone()]);
                        sh.bytes[r].copy_from_slice(&f(old).to_le_bytes()[..size as usize]);
                        old
                    }
                    Space::Global | Space::Generic => self.global.rmw(a, size, &f)?,
                    s => return Err(format!("atomic on {s:?} memory")),
                };
                if let Some(d) = dst {
                    set(top(t), *d, old);
                }
            }
            Op::Fence => {}
            other => return Err(format!("internal: {other:?} reached exec")),
        }
        Ok(())
    }
}

fn top(t: &mut Thread) -> &mut Frame {
    t.frames.last_mut().expect("a running thread has a frame")
}

fn set(f: &mut Frame, r: u32, v: u64) {
    f.regs[r as usize] = v;
    f.init[r as usize] = true;
}

fn le(b: &[u8]) -> u64 {
    let mut x = [0u8; 8];
    x[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(x)
}

/// The bytes of `sh` behind shared offset `addr`: the static variables from 0, the dynamic array
/// from `DYNAMIC_SHARED_AT`.
fn shared_range(sh: &Shared, addr: u64, size: u64) -> R<std::ops::Range<usize>> {
    if !addr.is_multiple_of(size) {
        return Err(format!(
            "misaligned {size}-byte shared access at offset {addr}"
        ));
    }
    let (at, start, len, what) = if addr >= DYNAMIC_SHARED_AT {
        let len = sh.bytes.len() - sh.static_len;
        (addr - DYNAMIC_SHARED_AT, sh.static_len, len, "dynamic")
    } else {
        (addr, 0, sh.static_len, "static")
    };
    if at.checked_add(size).is_none_or(|end| end > len as u64) {
        return Err(format!(
            "shared memory access of {size} bytes at offset {at} of the {what} shared memory is out of bounds ({len} bytes)"
        ));
    }
    Ok(start + at as usize..start + (at + size) as usize)
}

fn frame_range<'b>(area: &'b [u8], addr: u64, size: u64, what: &str) -> R<&'b [u8]> {
    if addr
        .checked_add(size)
        .is_none_or(|end| end > area.len() as u64)
    {
        return Err(format!(
            "{what} access of {size} bytes at offset {addr} is out of bounds"
        ));
    }
    Ok(&area[addr as usize..(addr + size) as usize])
}

fn frame_range_mut<'b>(
    area: &'b mut [u8],
    n: usize,
    addr: u64,
    size: u64,
    what: &str,
) -> R<&'b mut [u8]> {
    if addr.checked_add(size).is_none_or(|end| end > n as u64) {
        return Err(format!(
            "{what} access of {size} bytes at offset {addr} is out of bounds"
        ));
    }
    Ok(&mut area[addr as usize..(addr + size) as usize])
}

fn f32_of(x: u64, ftz: bool) -> f32 {
    let v = f32::from_bits(x as u32);
    if ftz { float::ftz32(v) } else { v }
}

fn out32(x: f32, ftz: bool, sat: bool) -> u64 {
    let x = if ftz { float::ftz32(x) } else { x };
    let x = if sat { float::sat32(x) } else { x };
    float::canon32(x) as u64
}

fn int_op(op: IntOp, ty: Ty, mode: MulMode, sat: bool, a: u64, b: u64, c: Option<u64>) -> R<u64> {
    let w = ty.bits();
    let m = ty.mask();
    let (ai, bi) = (ty.int(a), ty.int(b));
    let wrap = |x: i128| (x as u64) & m;
    let clamp_s32 = |x: i128| x.clamp(i32::MIN as i128, i32::MAX as i128);
    Ok(match op {
        IntOp::Add | IntOp::Sub => {
            let r = if op == IntOp::Add { ai + bi } else { ai - bi };
            if sat { wrap(clamp_s32(r)) } else { wrap(r) }
        }
        IntOp::Mul | IntOp::Mad => {
            // Unsigned 64-bit products need all 128 bits; signed ones fit i128.
            let p: u128 = if ty.signed() {
                (ai * bi) as u128
            } else {
                u128::from(a & m) * u128::from(b & m)
            };
            let r = match mode {
                MulMode::Lo => (p as u64) & m,
                MulMode::Hi if ty.signed() => (((ai * bi) >> w) as u64) & m,
                MulMode::Hi => ((p >> w) as u64) & m,
                MulMode::Wide => (p as u64) & wide_mask(w),
            };
            match c {
                None => r,
                Some(cv) => {
                    let (rm, ct) = match mode {
                        MulMode::Wide => (wide_mask(w), ty_wide(ty)),
                        _ => (m, ty),
                    };
                    let sum = ct.int(r) + ct.int(cv);
                    if sat {
                        wrap(clamp_s32(sum))
                    } else {
                        (sum as u64) & rm
                    }
                }
            }
        }
        IntOp::Div | IntOp::Rem => {
            if bi == 0 {
                return Err("integer division by zero".into());
            }
            let r = if op == IntOp::Div { ai / bi } else { ai % bi };
            wrap(r)
        }
        IntOp::Min => wrap(ai.min(bi)),
        IntOp::Max => wrap(ai.max(bi)),
        IntOp::And => a & b & m,
        IntOp::Or => (a | b) & m,
        IntOp::Xor => (a ^ b) & m,
        IntOp::Shl => {
            let s = b & 0xffff_ffff;
            if s >= w as u64 { 0 } else { (a << s) & m }
        }
        IntOp::Shr => {
            let s = (b & 0xffff_ffff).min(w as u64);
            if ty.signed() {
                wrap(ai >> s.min(127))
            } else if s >= w as u64 {
                0
            } else {
                (a & m) >> s
            }
        }
    })
}

fn wide_mask(w: u32) -> u64 {
    if w >= 32 {
        u64::MAX
    } else {
        (1u64 << (2 * w)) - 1
    }
}

fn ty_wide(t: Ty) -> Ty {
    match t {
        Ty::U16 => Ty::U32,
        Ty::S16 => Ty::S32,
        Ty::U32 => Ty::U64,
        Ty::S32 => Ty::S64,
        t => t,
    }
}

#[allow(clippy::too_many_arguments)]
fn float_op(op: FOp, ty: Ty, rnd: Rnd, ftz: bool, sat: bool, approx: bool, a: u64, b: u64) -> u64 {
    if ty == Ty::F64 {
        let (x, y) = (f64::from_bits(a), f64::from_bits(b));
        let r = match op {
            FOp::Add => x + y,
            FOp::Sub => x - y,
            FOp::Mul => x * y,
            FOp::Div => x / y,
            FOp::Min => fmin(x, y),
            FOp::Max => fmax(x, y),
        };
        return float::canon64(r);
    }
    let (x, y) = (f32_of(a, ftz), f32_of(b, ftz));
    let (xd, yd) = (f64::from(x), f64::from(y));
    let r: f32 = match op {
        FOp::Add => {
            let (s, e) = float::two_sum(xd, yd);
            float::round(s, e, rnd)
        }
        FOp::Sub => {
            let (s, e) = float::two_sum(xd, -yd);
            float::round(s, e, rnd)
        }
        FOp::Mul => float::round(xd * yd, 0.0, rnd),
        FOp::Div => {
            if approx {
                x / y
            } else {
                let q = xd / yd;
                let err = if q.is_finite() && q != 0.0 {
                    -(q.mul_add(yd, -xd)) * yd.signum()
                } else {
                    0.0
                };
                float::round(q, err, rnd)
            }
        }
        FOp::Min => return out32(fmin(xd, yd) as f32, ftz, false),
        FOp::Max => return out32(fmax(xd, yd) as f32, ftz, false),
    };
    out32(r, ftz, sat)
}

/// PTX min: a NaN operand yields the other; -0 is below +0.
fn fmin(x: f64, y: f64) -> f64 {
    if x.is_nan() {
        y
    } else if y.is_nan() || x < y || (x == y && x.is_sign_negative()) {
        x
    } else {
        y
    }
}

fn fmax(x: f64, y: f64) -> f64 {
    if x.is_nan() {
        y
    } else if y.is_nan() || x > y || (x == y && y.is_sign_negative()) {
        x
    } else {
        y
    }
}

fn fma_op(ty: Ty, rnd: Rnd, ftz: bool, sat: bool, a: u64, b: u64, c: u64) -> u64 {
    if ty == Ty::F64 {
        let r = f64::from_bits(a).mul_add(f64::from_bits(b), f64::from_bits(c));
        return float::canon64(r);
    }
    let (x, y, z) = (f32_of(a, ftz), f32_of(b, ftz), f32_of(c, ftz));
    // The product of two f32 is exact in f64; the sum then has an exact error term.
    let p = f64::from(x) * f64::from(y);
    let (s, e) = float::two_sum(p, f64::from(z));
    let rnd = if rnd == Rnd::None { Rnd::Rn } else { rnd };
    out32(float::round(s, e, rnd), ftz, sat)
}

fn funary(op: FUnOp, ty: Ty, rnd: Rnd, ftz: bool, approx: bool, a: u64) -> u64 {
    if ty == Ty::F64 {
        let x = f64::from_bits(a);
        let r = match op {
            FUnOp::Neg => return (-x).to_bits(),
            FUnOp::Abs => return x.abs().to_bits(),
            FUnOp::Rcp => 1.0 / x,
            _ => x.sqrt(),
        };
        return float::canon64(r);
    }
    let x = f32_of(a, ftz);
    let xd = f64::from(x);
    let r: f32 = match op {
        FUnOp::Neg => return out32(-x, ftz, false),
        FUnOp::Abs => return out32(x.abs(), ftz, false),
        FUnOp::Rcp if approx => 1.0 / x,
        FUnOp::Rcp => {
            let q = 1.0 / xd;
            let err = if q.is_finite() && q != 0.0 {
                -(q.mul_add(xd, -1.0)) * xd.signum()
            } else {
                0.0
            };
            float::round(q, err, rnd)
        }
        FUnOp::Sqrt if approx => x.sqrt(),
        FUnOp::Sqrt => {
            let s = xd.sqrt();
            let err = if s.is_finite() && s > 0.0 {
                -(s.mul_add(s, -xd))
            } else {
                0.0
            };
            float::round(s, err, rnd)
        }
        FUnOp::Rsqrt => 1.0 / x.sqrt(),
        FUnOp::Ex2 => x.exp2(),
        FUnOp::Lg2 => x.log2(),
        FUnOp::Sin => x.sin(),
        FUnOp::Cos => x.cos(),
    };
    out32(r, ftz, false)
}

fn compare(cmp: Cmp, ty: Ty, ftz: bool, a: u64, b: u64) -> bool {
    if ty.float() {
        let (x, y) = match ty {
            Ty::F64 => (f64::from_bits(a), f64::from_bits(b)),
            Ty::F16 => (
                half::f16::from_bits(a as u16).to_f64(),
                half::f16::from_bits(b as u16).to_f64(),
            ),
            Ty::BF16 => (
                half::bf16::from_bits(a as u16).to_f64(),
                half::bf16::from_bits(b as u16).to_f64(),
            ),
            _ => (f64::from(f32_of(a, ftz)), f64::from(f32_of(b, ftz))),
        };
        let un = x.is_nan() || y.is_nan();
        return match cmp {
            Cmp::Eq => !un && x == y,
            Cmp::Ne => !un && x != y,
            Cmp::Lt | Cmp::Lo => !un && x < y,
            Cmp::Le | Cmp::Ls => !un && x <= y,
            Cmp::Gt | Cmp::Hi => !un && x > y,
            Cmp::Ge | Cmp::Hs => !un && x >= y,
            Cmp::Equ => un || x == y,
            Cmp::Neu => un || x != y,
            Cmp::Ltu => un || x < y,
            Cmp::Leu => un || x <= y,
            Cmp::Gtu => un || x > y,
            Cmp::Geu => un || x >= y,
            Cmp::Num => !un,
            Cmp::Nan => un,
        };
    }
    let (x, y) = match cmp {
        Cmp::Lo | Cmp::Ls | Cmp::Hi | Cmp::Hs => ((a & ty.mask()) as i128, (b & ty.mask()) as i128),
        _ => (ty.int(a), ty.int(b)),
    };
    match cmp {
        Cmp::Eq | Cmp::Equ => x == y,
        Cmp::Ne | Cmp::Neu => x != y,
        Cmp::Lt | Cmp::Lo | Cmp::Ltu => x < y,
        Cmp::Le | Cmp::Ls | Cmp::Leu => x <= y,
        Cmp::Gt | Cmp::Hi | Cmp::Gtu => x > y,
        Cmp::Ge | Cmp::Hs | Cmp::Geu => x >= y,
        Cmp::Num => true,
        Cmp::Nan => false,
    }
}

/// A float source value of any float type, as f64 (exact).
fn float_in(ty: Ty, x: u64, ftz: bool) -> f64 {
    match ty {
        Ty::F64 => f64::from_bits(x),
        Ty::F32 => f64::from(f32_of(x, ftz)),
        Ty::F16 => half::f16::from_bits(x as u16).to_f64(),
        _ => half::bf16::from_bits(x as u16).to_f64(),
    }
}

fn cvt(dty: Ty, sty: Ty, rnd: Rnd, sat: bool, ftz: bool, x: u64) -> u64 {
    match (dty.float(), sty.float()) {
        (false, false) => {
            let v = sty.int(x);
            if sat {
                let (lo, hi) = if dty.signed() {
                    (
                        -(1i128 << (dty.bits() - 1)),
                        (1i128 << (dty.bits() - 1)) - 1,
                    )
                } else {
                    (0, (1i128 << dty.bits()) - 1)
                };
                (v.clamp(lo, hi) as u64) & dty.mask()
            } else if dty.signed() {
                // Sign-extend the truncated value in the register, as ld does.
                dty.int(v as u64) as u64
            } else {
                (v as u64) & dty.mask()
            }
        }
        (false, true) => {
            let v = float_in(sty, x, ftz);
            let r = float::float_to_int(v, rnd, dty.bits(), dty.signed());
            (r as u64) & dty.mask()
        }
        (true, false) => {
            let v = sty.int(x);
            let out = match dty {
                Ty::F64 => float::canon64(float::int_to_f64(v, rnd)),
                Ty::F32 => float::int_to::<f32>(v, rnd).to_bits() as u64,
                Ty::F16 => float::int_to::<half::f16>(v, rnd).to_bits() as u64,
                _ => float::int_to::<half::bf16>(v, rnd).to_bits() as u64,
            };
            sat_float(dty, out, sat)
        }
        (true, true) => {
            let v = float_in(sty, x, ftz);
            let v = if matches!(rnd, Rnd::Rni | Rnd::Rzi | Rnd::Rmi | Rnd::Rpi) {
                float::round_int(v, rnd)
            } else {
                v
            };
            let mode = if rnd == Rnd::None { Rnd::Rn } else { rnd };
            let out = match dty {
                Ty::F64 => v.to_bits(),
                Ty::F32 => {
                    let r: f32 = float::round(v, 0.0, mode);
                    out32(r, ftz, false)
                }
                Ty::F16 => {
                    let r: half::f16 = float::round(v, 0.0, mode);
                    if r.is_nan() {
                        0x7fff
                    } else {
                        r.to_bits() as u64
                    }
                }
                _ => {
                    let r: half::bf16 = float::round(v, 0.0, mode);
                    if r.is_nan() {
                        0x7fff
                    } else {
                        r.to_bits() as u64
                    }
                }
            };
            sat_float(dty, out, sat)
        }
    }
}

fn sat_float(ty: Ty, bits: u64, sat: bool) -> u64 {
    if !sat {
        return bits;
    }
    let v = float_in(ty, bits, false);
    let c = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    match ty {
        Ty::F64 => c.to_bits(),
        Ty::F32 => (c as f32).to_bits() as u64,
        Ty::F16 => half::f16::from_f64(c).to_bits() as u64,
        _ => half::bf16::from_f64(c).to_bits() as u64,
    }
}

fn atom_apply(op: AtomOp, ty: Ty, old: u64, b: u64, c: u64) -> u64 {
    let m = ty.mask();
    if ty == Ty::F32 {
        return match op {
            AtomOp::Add => {
                // atom.add.f32 rounds to nearest and flushes subnormals.
                let s = float::ftz32(f32_of(old, true) + f32_of(b, true));
                float::canon32(s) as u64
            }
            _ => b & m,
        };
    }
    let (o, bi) = (ty.int(old), ty.int(b));
    match op {
        AtomOp::Add => old.wrapping_add(b) & m,
        AtomOp::Min => (o.min(bi) as u64) & m,
        AtomOp::Max => (o.max(bi) as u64) & m,
        AtomOp::Cas => {
            if old & m == b & m {
                c & m
            } else {
                old & m
            }
        }
        AtomOp::Exch => b & m,
        AtomOp::And => old & b & m,
        AtomOp::Or => (old | b) & m,
        AtomOp::Xor => (old ^ b) & m,
        AtomOp::Inc => {
            if (old & m) >= (b & m) {
                0
            } else {
                (old + 1) & m
            }
        }
        AtomOp::Dec => {
            if old & m == 0 || (old & m) > (b & m) {
                b & m
            } else {
                (old - 1) & m
            }
        }
    }
}
