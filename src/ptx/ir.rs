//! The decoded form of a PTX module: every operand resolved to a register index, a frame
//! offset or an immediate, every label to an instruction index, once, at parse time.

/// Scalar types. Registers hold values as raw bits in a u64; a type says how many bits matter
/// and how to read them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    B8,
    B16,
    B32,
    B64,
    U8,
    U16,
    U32,
    U64,
    S8,
    S16,
    S32,
    S64,
    F16,
    BF16,
    F32,
    F64,
    Pred,
}

impl Ty {
    pub fn parse(s: &str) -> Option<Ty> {
        Some(match s {
            "b8" => Ty::B8,
            "b16" => Ty::B16,
            "b32" => Ty::B32,
            "b64" => Ty::B64,
            "u8" => Ty::U8,
            "u16" => Ty::U16,
            "u32" => Ty::U32,
            "u64" => Ty::U64,
            "s8" => Ty::S8,
            "s16" => Ty::S16,
            "s32" => Ty::S32,
            "s64" => Ty::S64,
            "f16" => Ty::F16,
            "bf16" => Ty::BF16,
            "f32" => Ty::F32,
            "f64" => Ty::F64,
            "pred" => Ty::Pred,
            _ => return None,
        })
    }

    pub fn bits(self) -> u32 {
        match self {
            Ty::Pred => 1,
            Ty::B8 | Ty::U8 | Ty::S8 => 8,
            Ty::B16 | Ty::U16 | Ty::S16 | Ty::F16 | Ty::BF16 => 16,
            Ty::B32 | Ty::U32 | Ty::S32 | Ty::F32 => 32,
            Ty::B64 | Ty::U64 | Ty::S64 | Ty::F64 => 64,
        }
    }

    pub fn bytes(self) -> usize {
        (self.bits() as usize).div_ceil(8)
    }

    pub fn signed(self) -> bool {
        matches!(self, Ty::S8 | Ty::S16 | Ty::S32 | Ty::S64)
    }

    pub fn float(self) -> bool {
        matches!(self, Ty::F16 | Ty::BF16 | Ty::F32 | Ty::F64)
    }

    /// The value's bits, masked to the type's width.
    pub fn mask(self) -> u64 {
        match self.bits() {
            64 => u64::MAX,
            b => (1u64 << b) - 1,
        }
    }

    /// The bits as a signed or unsigned integer of the type, widened to i128.
    pub fn int(self, v: u64) -> i128 {
        let b = self.bits();
        let m = v & self.mask();
        if self.signed() && b < 64 && (m >> (b - 1)) & 1 == 1 {
            m as i128 - (1i128 << b)
        } else if self.signed() && b == 64 {
            m as i64 as i128
        } else {
            m as i128
        }
    }
}

/// State spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    Generic,
    Global,
    Shared,
    Local,
    Param,
    Const,
}

/// Rounding modifiers: IEEE modes for floating results, the `i` forms for rounding to integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rnd {
    None,
    Rn,
    Rz,
    Rm,
    Rp,
    Rni,
    Rzi,
    Rmi,
    Rpi,
}

/// Special registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    Tid(u8),
    Ntid(u8),
    Ctaid(u8),
    Nctaid(u8),
    Laneid,
    Warpid,
    Nwarpid,
    WarpSize,
    /// `%dynamic_smem_size`: the launch's dynamic shared memory in bytes.
    DynamicSmemSize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    Reg(u32),
    Imm(u64),
    Special(Special),
    /// The address of a variable in its own state space.
    VarAddr(Space, u64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AddrBase {
    Reg(u32),
    /// A variable at this offset of its state space (frame or kernel params, shared, local).
    Var(Space, u64),
    Imm(u64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Addr {
    pub base: AddrBase,
    pub offset: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntOp {
    Add,
    Sub,
    Mul,
    Mad,
    Div,
    Rem,
    Min,
    Max,
    And,
    Or,
    Xor,
    Shl,
    Shr,
}

/// Which part of a product `mul`/`mad` keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MulMode {
    Lo,
    Hi,
    Wide,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Abs,
    Not,
    Popc,
    Clz,
    Brev,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FOp {
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FUnOp {
    Neg,
    Abs,
    Rcp,
    Sqrt,
    Rsqrt,
    Ex2,
    Lg2,
    Sin,
    Cos,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Lo,
    Ls,
    Hi,
    Hs,
    Equ,
    Neu,
    Ltu,
    Leu,
    Gtu,
    Geu,
    Num,
    Nan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoolOp {
    And,
    Or,
    Xor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtomOp {
    Add,
    Min,
    Max,
    Cas,
    Exch,
    And,
    Or,
    Xor,
    Inc,
    Dec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShflMode {
    Up,
    Down,
    Bfly,
    Idx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteMode {
    All,
    Any,
    Uni,
    Ballot,
}

/// A `.param` variable of a frame: where it lives and how many bytes it has.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slot {
    pub offset: u64,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Ld {
        space: Space,
        ty: Ty,
        dst: Vec<u32>,
        addr: Addr,
    },
    St {
        space: Space,
        ty: Ty,
        src: Vec<Operand>,
        addr: Addr,
    },
    Mov {
        ty: Ty,
        dst: u32,
        src: Operand,
    },
    /// `mov.bN d, {a, b, ..}`: lanes packed low first.
    Pack {
        ty: Ty,
        dst: u32,
        src: Vec<Operand>,
    },
    /// `mov.bN {a, b, ..}, s`: lanes unpacked low first.
    Unpack {
        ty: Ty,
        dst: Vec<u32>,
        src: Operand,
    },
    Cvt {
        dty: Ty,
        sty: Ty,
        rnd: Rnd,
        sat: bool,
        ftz: bool,
        dst: u32,
        src: Operand,
    },
    Cvta {
        to_generic: bool,
        space: Space,
        dst: u32,
        src: Operand,
    },
    Int {
        op: IntOp,
        ty: Ty,
        mode: MulMode,
        sat: bool,
        dst: u32,
        a: Operand,
        b: Operand,
        c: Option<Operand>,
    },
    Un {
        op: UnOp,
        ty: Ty,
        dst: u32,
        a: Operand,
    },
    Bfe {
        ty: Ty,
        dst: u32,
        a: Operand,
        b: Operand,
        c: Operand,
    },
    Bfi {
        ty: Ty,
        dst: u32,
        a: Operand,
        b: Operand,
        c: Operand,
        d: Operand,
    },
    Float {
        op: FOp,
        ty: Ty,
        rnd: Rnd,
        ftz: bool,
        sat: bool,
        approx: bool,
        dst: u32,
        a: Operand,
        b: Operand,
    },
    Fma {
        ty: Ty,
        rnd: Rnd,
        ftz: bool,
        sat: bool,
        dst: u32,
        a: Operand,
        b: Operand,
        c: Operand,
    },
    FUn {
        op: FUnOp,
        ty: Ty,
        rnd: Rnd,
        ftz: bool,
        approx: bool,
        dst: u32,
        a: Operand,
    },
    Setp {
        cmp: Cmp,
        ty: Ty,
        ftz: bool,
        p: u32,
        q: Option<u32>,
        a: Operand,
        b: Operand,
        combine: Option<(BoolOp, Operand, bool)>,
    },
    Selp {
        ty: Ty,
        dst: u32,
        a: Operand,
        b: Operand,
        p: Operand,
    },
    Bra {
        target: usize,
    },
    Call {
        func: usize,
        rets: Vec<Slot>,
        args: Vec<Slot>,
    },
    Ret,
    Exit,
    Bar {
        id: Operand,
    },
    Atom {
        space: Space,
        op: AtomOp,
        ty: Ty,
        dst: Option<u32>,
        addr: Addr,
        b: Operand,
        c: Option<Operand>,
    },
    Shfl {
        mode: ShflMode,
        dst: u32,
        pdst: Option<u32>,
        a: Operand,
        b: Operand,
        c: Operand,
        mask: Operand,
    },
    Vote {
        mode: VoteMode,
        dst: u32,
        a: Operand,
        negate: bool,
        mask: Operand,
    },
    /// `membar` and `fence`: the emulator is sequentially consistent, so they order nothing more.
    Fence,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Inst {
    pub line: u32,
    /// `@p` (false) or `@!p` (true).
    pub guard: Option<(u32, bool)>,
    pub op: Op,
}

/// A declared register.
#[derive(Clone, Debug)]
pub struct RegInfo {
    pub name: String,
    pub ty: Ty,
}

/// A parameter of an entry or function, in declaration order.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub ty: Option<Ty>,
    pub slot: Slot,
}

#[derive(Clone, Debug)]
pub struct Function {
    pub name: String,
    pub entry: bool,
    pub line: u32,
    pub regs: Vec<RegInfo>,
    /// Input parameters (for an entry: the kernel parameters, laid out in the param buffer).
    pub params: Vec<Param>,
    /// Return parameters of a `.func`.
    pub rets: Vec<Param>,
    /// Bytes of the frame's param area (parameters, returns and `.param` declared in the body),
    /// or of the kernel parameter buffer for an entry.
    pub param_bytes: u64,
    /// Bytes of the frame's `.local` area.
    pub local_bytes: u64,
    pub insts: Vec<Inst>,
}

#[derive(Clone, Debug)]
pub struct Module {
    pub version: String,
    pub target: String,
    pub funcs: Vec<Function>,
    /// Bytes of `.shared` memory per block (every `.shared` variable of the module).
    pub shared_bytes: u64,
}

impl Module {
    pub fn func(&self, name: &str) -> Option<(usize, &Function)> {
        self.funcs.iter().enumerate().find(|(_, f)| f.name == name)
    }
}
