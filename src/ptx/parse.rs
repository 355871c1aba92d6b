//! Parser of the PTX subset in `kernels/`, straight to the decoded form of `ir.rs`. Errors name
//! the line. An instruction, modifier or directive the emulator does not implement is an error
//! here, never a silent no-op at run time.

use std::collections::HashMap;

use super::ParseError;
use super::ir::*;
use super::lex::{Tok, Token, lex};

type PResult<T> = Result<T, ParseError>;

fn err<T>(line: u32, what: impl Into<String>) -> PResult<T> {
    Err(ParseError {
        line,
        what: what.into(),
    })
}

/// A name in scope.
#[derive(Clone, Copy, Debug)]
enum Sym {
    Reg(u32),
    Param(Slot),
    Local(u64),
    Shared(u64),
}

/// An operand as written, before resolution.
#[derive(Clone, Debug)]
enum Raw {
    Word(String),
    Num { text: String, neg: bool },
    Addr { base: Option<Box<Raw>>, offset: i64 },
    Vector(Vec<Raw>),
    Paren(Vec<Raw>),
    Not(String),
    Pipe(String, String),
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    funcs: Vec<Function>,
    shared_bytes: u64,
    globals: HashMap<String, Sym>,
}

struct FnCtx {
    scopes: Vec<HashMap<String, Sym>>,
    regs: Vec<RegInfo>,
    param_bytes: u64,
    local_bytes: u64,
    insts: Vec<Inst>,
    labels: HashMap<String, usize>,
    /// (instruction, label, line) to patch once every label is known.
    branches: Vec<(usize, String, u32)>,
    /// (instruction, function name, line) to patch once every function is known.
    calls: Vec<(usize, String, u32)>,
}

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a.max(1)) * a.max(1)
}

pub fn parse(src: &str) -> PResult<Module> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
        funcs: Vec::new(),
        shared_bytes: 0,
        globals: HashMap::new(),
    };
    let mut version = String::new();
    let mut target = String::new();
    let mut pending_calls = Vec::new();
    while let Some(t) = p.peek() {
        let line = t.line;
        let Tok::Word(w) = t.tok.clone() else {
            return err(line, format!("unexpected {:?} at module scope", t.tok));
        };
        match w.as_str() {
            ".version" => {
                p.pos += 1;
                version = p.num_text()?;
            }
            ".target" => {
                p.pos += 1;
                target = p.word()?;
                while p.eat(',') {
                    p.word()?;
                }
            }
            ".address_size" => {
                p.pos += 1;
                let n = p.num_text()?;
                if n != "64" {
                    return err(line, "only .address_size 64 is supported");
                }
            }
            ".shared" => {
                p.pos += 1;
                let (name, off) = p.shared_decl(line)?;
                p.globals.insert(name, Sym::Shared(off));
            }
            ".extern" if matches!(p.toks.get(p.pos + 1), Some(Token { tok: Tok::Word(w), .. }) if w == ".shared") =>
            {
                p.pos += 2;
                let name = p.dynamic_shared_decl(line)?;
                p.globals
                    .insert(name, Sym::Shared(super::mem::DYNAMIC_SHARED_AT));
            }
            ".visible" | ".extern" | ".weak" | ".entry" | ".func" => {
                if let Some((f, calls)) = p.function()? {
                    let idx = p.funcs.len();
                    for (i, name, l) in calls {
                        pending_calls.push((idx, i, name, l));
                    }
                    p.funcs.push(f);
                }
            }
            _ => return err(line, format!("unsupported module-level directive {w}")),
        }
    }
    for (fi, ii, name, line) in pending_calls {
        let Some(target) = p.funcs.iter().position(|f| f.name == name && !f.entry) else {
            return err(line, format!("call of undefined function {name}"));
        };
        let callee = &p.funcs[target];
        let (nr, na) = (callee.rets.len(), callee.params.len());
        if let Op::Call { func, rets, args } = &mut p.funcs[fi].insts[ii].op {
            if rets.len() != nr || args.len() != na {
                return err(
                    line,
                    format!(
                        "call of {name} with {} results and {} arguments; it has {nr} and {na}",
                        rets.len(),
                        args.len()
                    ),
                );
            }
            *func = target;
        }
    }
    Ok(Module {
        version,
        target,
        funcs: p.funcs,
        shared_bytes: p.shared_bytes,
    })
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn line(&self) -> u32 {
        self.peek()
            .or_else(|| self.toks.last())
            .map_or(0, |t| t.line)
    }

    fn next(&mut self) -> PResult<Token> {
        let t = self.toks.get(self.pos).cloned().ok_or_else(|| ParseError {
            line: self.line(),
            what: "unexpected end of text".into(),
        })?;
        self.pos += 1;
        Ok(t)
    }

    fn is(&self, c: char) -> bool {
        matches!(self.peek(), Some(Token { tok: Tok::Punct(x), .. }) if *x == c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.is(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> PResult<()> {
        let t = self.next()?;
        if t.tok == Tok::Punct(c) {
            Ok(())
        } else {
            err(t.line, format!("expected '{c}', found {:?}", t.tok))
        }
    }

    fn word(&mut self) -> PResult<String> {
        let t = self.next()?;
        match t.tok {
            Tok::Word(w) => Ok(w),
            other => err(t.line, format!("expected a name, found {other:?}")),
        }
    }

    fn num_text(&mut self) -> PResult<String> {
        let t = self.next()?;
        match t.tok {
            Tok::Num(n) => Ok(n),
            other => err(t.line, format!("expected a number, found {other:?}")),
        }
    }

    fn uint(&mut self) -> PResult<u64> {
        let line = self.line();
        let t = self.num_text()?;
        parse_int(&t).ok_or_else(|| ParseError {
            line,
            what: format!("bad integer {t}"),
        })
    }

    /// `[.align N] .type name`: the variable's name, element type and alignment.
    fn var_head(&mut self, line: u32) -> PResult<(String, Ty, u64)> {
        let mut align = 0;
        let mut ty = None;
        loop {
            let w = self.word()?;
            if w == ".align" {
                align = self.uint()?;
            } else if let Some(t) = w.strip_prefix('.').and_then(Ty::parse) {
                ty = Some(t);
            } else if w.starts_with('.') {
                return err(line, format!("unsupported variable attribute {w}"));
            } else {
                let ty = ty.ok_or_else(|| ParseError {
                    line,
                    what: format!("{w} has no type"),
                })?;
                return Ok((w, ty, align.max(ty.bytes() as u64)));
            }
        }
    }

    /// `[.align N] .type name[N]`: the variable's name, alignment and bytes.
    fn var_decl(&mut self, line: u32) -> PResult<(String, u64, u64)> {
        let (name, ty, align) = self.var_head(line)?;
        let mut n = 1;
        if self.eat('[') {
            n = self.uint()?;
            self.expect(']')?;
        }
        Ok((name, align, ty.bytes() as u64 * n))
    }

    fn shared_decl(&mut self, line: u32) -> PResult<(String, u64)> {
        let (name, align, size) = self.var_decl(line)?;
        self.expect(';')?;
        let off = align_up(self.shared_bytes, align);
        self.shared_bytes = off + size;
        Ok((name, off))
    }

    /// `.extern .shared [.align N] .type name[];`: the launch's dynamic shared memory. Every
    /// such declaration names its start, [`crate::ptx::mem::DYNAMIC_SHARED_AT`] (a kernel cannot
    /// tell where it lies relative to the static variables, so this is as good as any place).
    fn dynamic_shared_decl(&mut self, line: u32) -> PResult<String> {
        let (name, _, align) = self.var_head(line)?;
        if align > 4096 || !align.is_power_of_two() {
            return err(line, format!("unsupported alignment {align}"));
        }
        self.expect('[')?;
        self.expect(']')?;
        self.expect(';')?;
        Ok(name)
    }

    /// `.param` declarations of a signature: `(.param .u64 a, .param .align 16 .b8 b[16])`.
    fn param_list(&mut self, line: u32, bytes: &mut u64) -> PResult<Vec<Param>> {
        let mut out = Vec::new();
        self.expect('(')?;
        if self.eat(')') {
            return Ok(out);
        }
        loop {
            let space = self.word()?;
            if space != ".param" {
                return err(line, format!("parameters must be .param, found {space}"));
            }
            let save = self.pos;
            let (name, align, size) = self.var_decl(line)?;
            // Remember the scalar type when it is one element, for argument checks.
            let ty = self.toks[save..self.pos].iter().find_map(|t| match &t.tok {
                Tok::Word(w) => w.strip_prefix('.').and_then(Ty::parse),
                _ => None,
            });
            let off = align_up(*bytes, align);
            *bytes = off + size;
            out.push(Param {
                name,
                ty,
                slot: Slot { offset: off, size },
            });
            if self.eat(')') {
                return Ok(out);
            }
            self.expect(',')?;
        }
    }

    /// A function or entry. `None` for a prototype without a body.
    #[allow(clippy::type_complexity)]
    fn function(&mut self) -> PResult<Option<(Function, Vec<(usize, String, u32)>)>> {
        let line = self.line();
        let mut entry = None;
        while entry.is_none() {
            match self.word()?.as_str() {
                ".visible" | ".extern" | ".weak" => {}
                ".entry" => entry = Some(true),
                ".func" => entry = Some(false),
                w => return err(line, format!("unexpected {w} before a function")),
            }
        }
        let entry = entry.unwrap_or(false);
        let mut param_bytes = 0u64;
        let rets = if !entry && self.is('(') {
            self.param_list(line, &mut param_bytes)?
        } else {
            Vec::new()
        };
        let name = self.word()?;
        let params = if self.is('(') {
            self.param_list(line, &mut param_bytes)?
        } else {
            Vec::new()
        };
        // Performance directives carry nothing the emulator needs.
        while let Some(Token {
            tok: Tok::Word(w), ..
        }) = self.peek()
        {
            if !matches!(
                w.as_str(),
                ".maxntid" | ".reqntid" | ".minnctapersm" | ".maxnreg" | ".noreturn"
            ) {
                break;
            }
            self.pos += 1;
            while matches!(
                self.peek(),
                Some(Token {
                    tok: Tok::Num(_),
                    ..
                })
            ) {
                self.pos += 1;
                self.eat(',');
            }
        }
        if self.eat(';') {
            return Ok(None);
        }
        self.expect('{')?;
        let mut top = HashMap::new();
        for p in rets.iter().chain(&params) {
            top.insert(p.name.clone(), Sym::Param(p.slot));
        }
        let mut cx = FnCtx {
            scopes: vec![top],
            regs: Vec::new(),
            param_bytes,
            local_bytes: 0,
            insts: Vec::new(),
            labels: HashMap::new(),
            branches: Vec::new(),
            calls: Vec::new(),
        };
        self.body(&mut cx)?;
        for (i, label, l) in std::mem::take(&mut cx.branches) {
            let Some(&t) = cx.labels.get(&label) else {
                return err(l, format!("branch to undefined label {label}"));
            };
            if let Op::Bra { target } = &mut cx.insts[i].op {
                *target = t;
            }
        }
        // Falling off the end of a body returns.
        cx.insts.push(Inst {
            line: self.toks[self.pos - 1].line,
            guard: None,
            op: if entry { Op::Exit } else { Op::Ret },
        });
        Ok(Some((
            Function {
                name,
                entry,
                line,
                regs: cx.regs,
                params,
                rets,
                param_bytes: cx.param_bytes,
                local_bytes: cx.local_bytes,
                insts: cx.insts,
            },
            cx.calls,
        )))
    }

    /// Statements up to the `}` that closes the current scope.
    fn body(&mut self, cx: &mut FnCtx) -> PResult<()> {
        loop {
            let t = self.next()?;
            let line = t.line;
            match t.tok {
                Tok::Punct('}') => return Ok(()),
                Tok::Punct('{') => {
                    cx.scopes.push(HashMap::new());
                    self.body(cx)?;
                    cx.scopes.pop();
                }
                Tok::Punct('@') => {
                    let neg = self.eat('!');
                    let name = self.word()?;
                    let Some(Sym::Reg(r)) = lookup(cx, &self.globals, &name) else {
                        return err(line, format!("guard {name} is not a declared predicate"));
                    };
                    let op = self.word()?;
                    self.instruction(cx, line, &op, Some((r, neg)))?;
                }
                Tok::Word(w) if self.is(':') => {
                    self.pos += 1;
                    if cx.labels.insert(w.clone(), cx.insts.len()).is_some() {
                        return err(line, format!("label {w} defined twice"));
                    }
                }
                Tok::Word(w) => match w.as_str() {
                    ".reg" => self.reg_decl(cx, line)?,
                    ".param" => {
                        let (name, align, size) = self.var_decl(line)?;
                        self.expect(';')?;
                        let off = align_up(cx.param_bytes, align);
                        cx.param_bytes = off + size;
                        declare(cx, name, Sym::Param(Slot { offset: off, size }));
                    }
                    ".local" => {
                        let (name, align, size) = self.var_decl(line)?;
                        self.expect(';')?;
                        let off = align_up(cx.local_bytes, align);
                        cx.local_bytes = off + size;
                        declare(cx, name, Sym::Local(off));
                    }
                    ".shared" => {
                        let (name, off) = self.shared_decl(line)?;
                        declare(cx, name, Sym::Shared(off));
                    }
                    ".pragma" => {
                        while !self.eat(';') {
                            self.next()?;
                        }
                    }
                    _ if w.starts_with('.') => {
                        return err(
                            line,
                            format!("unsupported directive {w} in a function body"),
                        );
                    }
                    _ => self.instruction(cx, line, &w, None)?,
                },
                other => return err(line, format!("unexpected {other:?}")),
            }
        }
    }

    fn reg_decl(&mut self, cx: &mut FnCtx, line: u32) -> PResult<()> {
        let tyw = self.word()?;
        let ty = tyw
            .strip_prefix('.')
            .and_then(Ty::parse)
            .ok_or_else(|| ParseError {
                line,
                what: format!("unsupported register type {tyw}"),
            })?;
        loop {
            let name = self.word()?;
            if self.eat('<') {
                let n = self.uint()?;
                self.expect('>')?;
                for i in 0..n {
                    new_reg(cx, format!("{name}{i}"), ty);
                }
            } else {
                new_reg(cx, name, ty);
            }
            if self.eat(';') {
                return Ok(());
            }
            self.expect(',')?;
        }
    }

    fn raw_operand(&mut self) -> PResult<Raw> {
        let t = self.next()?;
        let line = t.line;
        Ok(match t.tok {
            Tok::Punct('[') => {
                let mut base = None;
                let mut offset = 0i64;
                if !self.is('+') && !self.is('-') {
                    base = Some(Box::new(self.raw_operand()?));
                }
                while self.is('+') || self.is('-') {
                    let neg = self.eat('-');
                    if !neg {
                        self.pos += 1;
                    }
                    let v = self.uint()? as i64;
                    offset += if neg { -v } else { v };
                }
                self.expect(']')?;
                Raw::Addr { base, offset }
            }
            Tok::Punct('{') => {
                let mut v = Vec::new();
                loop {
                    v.push(self.raw_operand()?);
                    if self.eat('}') {
                        break;
                    }
                    self.expect(',')?;
                }
                Raw::Vector(v)
            }
            Tok::Punct('(') => {
                let mut v = Vec::new();
                if !self.eat(')') {
                    loop {
                        v.push(self.raw_operand()?);
                        if self.eat(')') {
                            break;
                        }
                        self.expect(',')?;
                    }
                }
                Raw::Paren(v)
            }
            Tok::Punct('-') => {
                let text = self.num_text()?;
                Raw::Num { text, neg: true }
            }
            Tok::Punct('!') => Raw::Not(self.word()?),
            Tok::Num(text) => Raw::Num { text, neg: false },
            Tok::Word(w) => {
                if self.eat('|') {
                    Raw::Pipe(w, self.word()?)
                } else {
                    Raw::Word(w)
                }
            }
            other => return err(line, format!("unexpected {other:?} in an operand")),
        })
    }

    fn instruction(
        &mut self,
        cx: &mut FnCtx,
        line: u32,
        opcode: &str,
        guard: Option<(u32, bool)>,
    ) -> PResult<()> {
        let mut raws = Vec::new();
        if !self.eat(';') {
            loop {
                raws.push(self.raw_operand()?);
                if self.eat(';') {
                    break;
                }
                self.expect(',')?;
            }
        }
        let d = Decoder {
            cx,
            globals: &self.globals,
            line,
            pending: std::cell::Cell::new(None),
        };
        let op = d.decode(opcode, raws)?;
        let pending = d.pending.take();
        let idx = cx.insts.len();
        cx.insts.push(Inst { line, guard, op });
        match pending {
            Some(Pending::Branch(l)) => cx.branches.push((idx, l, line)),
            Some(Pending::Call(f)) => cx.calls.push((idx, f, line)),
            None => {}
        }
        Ok(())
    }
}

/// A branch label or callee name the decoder saw, patched once the function or module is read.
enum Pending {
    Branch(String),
    Call(String),
}

fn lookup(cx: &FnCtx, globals: &HashMap<String, Sym>, name: &str) -> Option<Sym> {
    cx.scopes
        .iter()
        .rev()
        .find_map(|s| s.get(name).copied())
        .or_else(|| globals.get(name).copied())
}

fn declare(cx: &mut FnCtx, name: String, sym: Sym) {
    if let Some(s) = cx.scopes.last_mut() {
        s.insert(name, sym);
    }
}

fn new_reg(cx: &mut FnCtx, name: String, ty: Ty) {
    let idx = cx.regs.len() as u32;
    cx.regs.push(RegInfo {
        name: name.clone(),
        ty,
    });
    declare(cx, name, Sym::Reg(idx));
}

/// Integer literals: decimal, `0x` hex, `0b` binary, leading-zero octal, optional `U` suffix.
pub fn parse_int(t: &str) -> Option<u64> {
    let t = t.strip_suffix('U').unwrap_or(t);
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if let Some(b) = t.strip_prefix("0b").or_else(|| t.strip_prefix("0B")) {
        u64::from_str_radix(b, 2).ok()
    } else if t.len() > 1 && t.starts_with('0') && t.chars().all(|c| c.is_ascii_digit()) {
        u64::from_str_radix(&t[1..], 8).ok()
    } else {
        t.parse().ok()
    }
}

/// Modifiers of an opcode, sorted into kinds.
#[derive(Default, Debug)]
struct Mods {
    space: Option<Space>,
    types: Vec<Ty>,
    rnd: Option<Rnd>,
    vec: usize,
    cmp: Option<Cmp>,
    flags: Vec<String>,
}

impl Mods {
    fn has(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
}

fn sort_mods(base: &str, parts: &[&str]) -> Mods {
    let mut m = Mods {
        vec: 1,
        ..Default::default()
    };
    for &p in parts {
        if let Some(t) = Ty::parse(p) {
            m.types.push(t);
            continue;
        }
        let space = match p {
            "global" => Some(Space::Global),
            "shared" => Some(Space::Shared),
            "local" => Some(Space::Local),
            "param" => Some(Space::Param),
            "const" => Some(Space::Const),
            _ => None,
        };
        if space.is_some() {
            m.space = space;
            continue;
        }
        let rnd = match p {
            "rn" => Some(Rnd::Rn),
            "rz" => Some(Rnd::Rz),
            "rm" => Some(Rnd::Rm),
            "rp" => Some(Rnd::Rp),
            "rni" => Some(Rnd::Rni),
            "rzi" => Some(Rnd::Rzi),
            "rmi" => Some(Rnd::Rmi),
            "rpi" => Some(Rnd::Rpi),
            _ => None,
        };
        if rnd.is_some() {
            m.rnd = rnd;
            continue;
        }
        match p {
            "v2" => m.vec = 2,
            "v4" => m.vec = 4,
            _ => {
                let cmp = match p {
                    "eq" => Some(Cmp::Eq),
                    "ne" => Some(Cmp::Ne),
                    "lt" => Some(Cmp::Lt),
                    "le" => Some(Cmp::Le),
                    "gt" => Some(Cmp::Gt),
                    "ge" => Some(Cmp::Ge),
                    "lo" => Some(Cmp::Lo),
                    "ls" => Some(Cmp::Ls),
                    "hi" => Some(Cmp::Hi),
                    "hs" => Some(Cmp::Hs),
                    "equ" => Some(Cmp::Equ),
                    "neu" => Some(Cmp::Neu),
                    "ltu" => Some(Cmp::Ltu),
                    "leu" => Some(Cmp::Leu),
                    "gtu" => Some(Cmp::Gtu),
                    "geu" => Some(Cmp::Geu),
                    "num" => Some(Cmp::Num),
                    "nan" => Some(Cmp::Nan),
                    _ => None,
                };
                match cmp {
                    // Only setp compares; elsewhere `lo`/`hi` are product halves.
                    Some(c) if base == "setp" && m.cmp.is_none() => m.cmp = Some(c),
                    _ => m.flags.push(p.to_string()),
                }
            }
        }
    }
    m
}

struct Decoder<'a> {
    cx: &'a FnCtx,
    globals: &'a HashMap<String, Sym>,
    line: u32,
    pending: std::cell::Cell<Option<Pending>>,
}

impl Decoder<'_> {
    fn fail<T>(&self, what: impl Into<String>) -> PResult<T> {
        err(self.line, what)
    }

    fn sym(&self, name: &str) -> PResult<Sym> {
        lookup(self.cx, self.globals, name).ok_or_else(|| ParseError {
            line: self.line,
            what: format!("undeclared name {name}"),
        })
    }

    fn reg(&self, r: &Raw) -> PResult<u32> {
        match r {
            Raw::Word(w) => match self.sym(w)? {
                Sym::Reg(i) => Ok(i),
                _ => self.fail(format!("{w} is not a register")),
            },
            other => self.fail(format!("expected a register, found {other:?}")),
        }
    }

    /// A source operand of type `ty`.
    fn src(&self, r: &Raw, ty: Ty) -> PResult<Operand> {
        match r {
            Raw::Word(w) => {
                if let Some(s) = special(w) {
                    return Ok(Operand::Special(s));
                }
                match self.sym(w)? {
                    Sym::Reg(i) => Ok(Operand::Reg(i)),
                    Sym::Shared(off) => Ok(Operand::VarAddr(Space::Shared, off)),
                    Sym::Local(off) => Ok(Operand::VarAddr(Space::Local, off)),
                    Sym::Param(s) => Ok(Operand::VarAddr(Space::Param, s.offset)),
                }
            }
            Raw::Num { text, neg } => Ok(Operand::Imm(self.imm(text, *neg, ty)?)),
            other => self.fail(format!("unexpected operand {other:?}")),
        }
    }

    fn imm(&self, text: &str, neg: bool, ty: Ty) -> PResult<u64> {
        let bad = || ParseError {
            line: self.line,
            what: format!("bad literal {text} for .{ty:?}"),
        };
        if let Some(h) = text.strip_prefix("0f").or_else(|| text.strip_prefix("0F")) {
            let bits = u32::from_str_radix(h, 16).map_err(|_| bad())?;
            let v = f32::from_bits(bits);
            let v = if neg { -v } else { v };
            return Ok(match ty {
                Ty::F64 => f64::from(v).to_bits(),
                _ => u64::from(v.to_bits()),
            });
        }
        if let Some(h) = text.strip_prefix("0d").or_else(|| text.strip_prefix("0D")) {
            let bits = u64::from_str_radix(h, 16).map_err(|_| bad())?;
            let v = f64::from_bits(bits);
            let v = if neg { -v } else { v };
            return Ok(match ty {
                Ty::F32 => u64::from((v as f32).to_bits()),
                _ => v.to_bits(),
            });
        }
        if ty.float() {
            let v: f64 = text.parse().map_err(|_| bad())?;
            let v = if neg { -v } else { v };
            return Ok(match ty {
                Ty::F64 => v.to_bits(),
                Ty::F32 => u64::from((v as f32).to_bits()),
                Ty::F16 => u64::from(half::f16::from_f64(v).to_bits()),
                _ => u64::from(half::bf16::from_f64(v).to_bits()),
            });
        }
        let v = parse_int(text).ok_or_else(bad)?;
        let v = if neg { v.wrapping_neg() } else { v };
        Ok(v & ty.mask().max(1))
    }

    fn addr(&self, r: &Raw) -> PResult<Addr> {
        let Raw::Addr { base, offset } = r else {
            return self.fail(format!("expected an address [..], found {r:?}"));
        };
        let base = match base.as_deref() {
            None => AddrBase::Imm(0),
            Some(Raw::Num { text, neg }) => AddrBase::Imm(self.imm(text, *neg, Ty::U64)?),
            Some(Raw::Word(w)) => match self.sym(w)? {
                Sym::Reg(i) => AddrBase::Reg(i),
                Sym::Param(s) => AddrBase::Var(Space::Param, s.offset),
                Sym::Local(o) => AddrBase::Var(Space::Local, o),
                Sym::Shared(o) => AddrBase::Var(Space::Shared, o),
            },
            Some(other) => return self.fail(format!("bad address base {other:?}")),
        };
        Ok(Addr {
            base,
            offset: *offset,
        })
    }

    fn param_slot(&self, r: &Raw) -> PResult<Slot> {
        match r {
            Raw::Word(w) => match self.sym(w)? {
                Sym::Param(s) => Ok(s),
                _ => self.fail(format!("call operand {w} is not a .param variable")),
            },
            other => self.fail(format!("bad call operand {other:?}")),
        }
    }

    fn check_flags(&self, m: &Mods, allowed: &[&str]) -> PResult<()> {
        for f in &m.flags {
            if !allowed.contains(&f.as_str()) {
                return self.fail(format!("unsupported modifier .{f}"));
            }
        }
        Ok(())
    }

    fn one_type(&self, m: &Mods) -> PResult<Ty> {
        match m.types.as_slice() {
            [t] => Ok(*t),
            _ => self.fail(format!("expected one type, found {:?}", m.types)),
        }
    }

    fn arity(&self, raws: &[Raw], n: usize) -> PResult<()> {
        if raws.len() == n {
            Ok(())
        } else {
            self.fail(format!("expected {n} operands, found {}", raws.len()))
        }
    }

    fn decode(&self, opcode: &str, raws: Vec<Raw>) -> PResult<Op> {
        let parts: Vec<&str> = opcode.split('.').collect();
        let base = parts[0];
        let m = sort_mods(base, &parts[1..]);
        const CACHE: &[&str] = &[
            "ca", "cg", "cs", "lu", "cv", "wb", "wt", "nc", "volatile", "relaxed", "acquire",
            "release", "weak", "gpu", "cta", "sys",
        ];
        match base {
            "ld" | "st" => {
                self.check_flags(&m, CACHE)?;
                let ty = self.one_type(&m)?;
                let space = m.space.unwrap_or(Space::Generic);
                if space == Space::Const {
                    return self.fail("the .const space is not supported");
                }
                self.arity(&raws, 2)?;
                let list = |r: &Raw| -> Vec<Raw> {
                    match r {
                        Raw::Vector(v) => v.clone(),
                        other => vec![other.clone()],
                    }
                };
                if base == "ld" {
                    let dst = list(&raws[0]);
                    if dst.len() != m.vec {
                        return self.fail(format!("ld.v{} with {} registers", m.vec, dst.len()));
                    }
                    let dst = dst.iter().map(|r| self.reg(r)).collect::<PResult<_>>()?;
                    Ok(Op::Ld {
                        space,
                        ty,
                        dst,
                        addr: self.addr(&raws[1])?,
                    })
                } else {
                    let src = list(&raws[1]);
                    if src.len() != m.vec {
                        return self.fail(format!("st.v{} with {} values", m.vec, src.len()));
                    }
                    let src = src
                        .iter()
                        .map(|r| self.src(r, ty))
                        .collect::<PResult<_>>()?;
                    Ok(Op::St {
                        space,
                        ty,
                        src,
                        addr: self.addr(&raws[0])?,
                    })
                }
            }
            "mov" => {
                self.check_flags(&m, &[])?;
                let ty = self.one_type(&m)?;
                self.arity(&raws, 2)?;
                match (&raws[0], &raws[1]) {
                    (Raw::Vector(d), _) if lane_ty(ty, d.len()).is_none() => {
                        self.fail(format!("cannot unpack .{ty:?} into {} values", d.len()))
                    }
                    (Raw::Vector(d), s) => Ok(Op::Unpack {
                        ty,
                        dst: d.iter().map(|r| self.reg(r)).collect::<PResult<_>>()?,
                        src: self.src(s, ty)?,
                    }),
                    (d, Raw::Vector(s)) => {
                        let lane = lane_ty(ty, s.len()).ok_or_else(|| ParseError {
                            line: self.line,
                            what: format!("cannot pack {} values into .{ty:?}", s.len()),
                        })?;
                        Ok(Op::Pack {
                            ty,
                            dst: self.reg(d)?,
                            src: s
                                .iter()
                                .map(|r| self.src(r, lane))
                                .collect::<PResult<_>>()?,
                        })
                    }
                    (d, s) => Ok(Op::Mov {
                        ty,
                        dst: self.reg(d)?,
                        src: self.src(s, ty)?,
                    }),
                }
            }
            "cvt" => {
                self.check_flags(&m, &["sat", "ftz"])?;
                let [dty, sty] = m.types.as_slice() else {
                    return self.fail("cvt needs a destination and a source type");
                };
                self.arity(&raws, 2)?;
                let rnd = m.rnd.unwrap_or(Rnd::None);
                let (df, sf) = (dty.float(), sty.float());
                let need = match (df, sf) {
                    (true, false) => Some("an IEEE rounding (.rn .rz .rm .rp)"),
                    (false, true) => Some("an integer rounding (.rni .rzi .rmi .rpi)"),
                    (true, true) if dty.bits() < sty.bits() => {
                        Some("an IEEE rounding (.rn .rz .rm .rp)")
                    }
                    _ => None,
                };
                let ieee = matches!(rnd, Rnd::Rn | Rnd::Rz | Rnd::Rm | Rnd::Rp);
                let int = matches!(rnd, Rnd::Rni | Rnd::Rzi | Rnd::Rmi | Rnd::Rpi);
                let ok = match need {
                    Some(s) if s.starts_with("an IEEE") => ieee,
                    Some(_) => int,
                    None => rnd == Rnd::None || (df && sf && dty == sty && int),
                };
                if !ok {
                    return self.fail(format!("cvt.{dty:?}.{sty:?} with rounding {rnd:?}"));
                }
                Ok(Op::Cvt {
                    dty: *dty,
                    sty: *sty,
                    rnd,
                    sat: m.has("sat"),
                    ftz: m.has("ftz"),
                    dst: self.reg(&raws[0])?,
                    src: self.src(&raws[1], *sty)?,
                })
            }
            "cvta" => {
                self.check_flags(&m, &["to"])?;
                let ty = self.one_type(&m)?;
                self.arity(&raws, 2)?;
                let space = m.space.unwrap_or(Space::Generic);
                if !matches!(space, Space::Global | Space::Shared | Space::Local) {
                    return self.fail("cvta needs .global, .shared or .local");
                }
                Ok(Op::Cvta {
                    to_generic: !m.has("to"),
                    space,
                    dst: self.reg(&raws[0])?,
                    src: self.src(&raws[1], ty)?,
                })
            }
            "add" | "sub" | "mul" | "mad" | "div" | "rem" | "min" | "max" | "and" | "or"
            | "xor" | "shl" | "shr" | "fma" => self.arith(base, m, raws),
            "neg" | "abs" | "not" | "popc" | "clz" | "brev" | "rcp" | "sqrt" | "rsqrt" | "ex2"
            | "lg2" | "sin" | "cos" => self.unary(base, m, raws),
            "bfe" | "bfi" => {
                self.check_flags(&m, &[])?;
                let ty = self.one_type(&m)?;
                if base == "bfe" {
                    self.arity(&raws, 4)?;
                    Ok(Op::Bfe {
                        ty,
                        dst: self.reg(&raws[0])?,
                        a: self.src(&raws[1], ty)?,
                        b: self.src(&raws[2], Ty::U32)?,
                        c: self.src(&raws[3], Ty::U32)?,
                    })
                } else {
                    self.arity(&raws, 5)?;
                    Ok(Op::Bfi {
                        ty,
                        dst: self.reg(&raws[0])?,
                        a: self.src(&raws[1], ty)?,
                        b: self.src(&raws[2], ty)?,
                        c: self.src(&raws[3], Ty::U32)?,
                        d: self.src(&raws[4], Ty::U32)?,
                    })
                }
            }
            "setp" => {
                let combine_op = m.flags.iter().find_map(|f| match f.as_str() {
                    "and" => Some(BoolOp::And),
                    "or" => Some(BoolOp::Or),
                    "xor" => Some(BoolOp::Xor),
                    _ => None,
                });
                self.check_flags(&m, &["and", "or", "xor", "ftz"])?;
                let ty = self.one_type(&m)?;
                let cmp = m.cmp.ok_or_else(|| ParseError {
                    line: self.line,
                    what: "setp needs a comparison".into(),
                })?;
                let (p, q) = match &raws.first() {
                    Some(Raw::Pipe(a, b)) => (
                        self.reg(&Raw::Word(a.clone()))?,
                        Some(self.reg(&Raw::Word(b.clone()))?),
                    ),
                    Some(r) => (self.reg(r)?, None),
                    None => return self.fail("setp needs operands"),
                };
                let combine = match combine_op {
                    Some(op) => {
                        self.arity(&raws, 4)?;
                        let (c, neg) = match &raws[3] {
                            Raw::Not(w) => (self.src(&Raw::Word(w.clone()), Ty::Pred)?, true),
                            r => (self.src(r, Ty::Pred)?, false),
                        };
                        Some((op, c, neg))
                    }
                    None => {
                        self.arity(&raws, 3)?;
                        None
                    }
                };
                Ok(Op::Setp {
                    cmp,
                    ty,
                    ftz: m.has("ftz"),
                    p,
                    q,
                    a: self.src(&raws[1], ty)?,
                    b: self.src(&raws[2], ty)?,
                    combine,
                })
            }
            "selp" => {
                self.check_flags(&m, &[])?;
                let ty = self.one_type(&m)?;
                self.arity(&raws, 4)?;
                Ok(Op::Selp {
                    ty,
                    dst: self.reg(&raws[0])?,
                    a: self.src(&raws[1], ty)?,
                    b: self.src(&raws[2], ty)?,
                    p: self.src(&raws[3], Ty::Pred)?,
                })
            }
            "bra" => {
                self.check_flags(&m, &["uni"])?;
                self.arity(&raws, 1)?;
                let Raw::Word(label) = &raws[0] else {
                    return self.fail("bra needs a label");
                };
                self.pending.set(Some(Pending::Branch(label.clone())));
                Ok(Op::Bra { target: 0 })
            }
            "call" => {
                self.check_flags(&m, &["uni"])?;
                let (rets, name, args) = match raws.as_slice() {
                    [Raw::Paren(r), Raw::Word(f), Raw::Paren(a)] => {
                        (r.clone(), f.clone(), a.clone())
                    }
                    [Raw::Word(f), Raw::Paren(a)] => (Vec::new(), f.clone(), a.clone()),
                    [Raw::Paren(r), Raw::Word(f)] => (r.clone(), f.clone(), Vec::new()),
                    [Raw::Word(f)] => (Vec::new(), f.clone(), Vec::new()),
                    _ => return self.fail("call forms: call (rets), f, (args)"),
                };
                let rets = rets
                    .iter()
                    .map(|r| self.param_slot(r))
                    .collect::<PResult<_>>()?;
                let args = args
                    .iter()
                    .map(|r| self.param_slot(r))
                    .collect::<PResult<_>>()?;
                self.pending.set(Some(Pending::Call(name)));
                Ok(Op::Call {
                    func: usize::MAX,
                    rets,
                    args,
                })
            }
            "ret" | "exit" => {
                self.check_flags(&m, &["uni"])?;
                self.arity(&raws, 0)?;
                Ok(if base == "ret" { Op::Ret } else { Op::Exit })
            }
            "bar" | "barrier" => {
                self.check_flags(&m, &["sync", "cta", "aligned"])?;
                if !m.has("sync") && base == "bar" {
                    return self.fail("only bar.sync is supported");
                }
                match raws.len() {
                    1 => Ok(Op::Bar {
                        id: self.src(&raws[0], Ty::U32)?,
                    }),
                    _ => self.fail("bar.sync takes one operand (a thread count is not supported)"),
                }
            }
            "membar" | "fence" => {
                self.check_flags(&m, &["cta", "gl", "gpu", "sys", "sc", "acq_rel"])?;
                Ok(Op::Fence)
            }
            "atom" | "red" => self.atom(base, m, raws),
            "shfl" => {
                self.check_flags(&m, &["sync", "up", "down", "bfly", "idx"])?;
                if !m.has("sync") {
                    return self.fail("only shfl.sync is supported");
                }
                let mode = if m.has("up") {
                    ShflMode::Up
                } else if m.has("down") {
                    ShflMode::Down
                } else if m.has("bfly") {
                    ShflMode::Bfly
                } else if m.has("idx") {
                    ShflMode::Idx
                } else {
                    return self.fail("shfl.sync needs .up, .down, .bfly or .idx");
                };
                if m.types != [Ty::B32] {
                    return self.fail("shfl.sync is .b32");
                }
                self.arity(&raws, 5)?;
                let (dst, pdst) = match &raws[0] {
                    Raw::Pipe(a, b) => (
                        self.reg(&Raw::Word(a.clone()))?,
                        Some(self.reg(&Raw::Word(b.clone()))?),
                    ),
                    r => (self.reg(r)?, None),
                };
                Ok(Op::Shfl {
                    mode,
                    dst,
                    pdst,
                    a: self.src(&raws[1], Ty::B32)?,
                    b: self.src(&raws[2], Ty::U32)?,
                    c: self.src(&raws[3], Ty::U32)?,
                    mask: self.src(&raws[4], Ty::U32)?,
                })
            }
            "vote" => {
                self.check_flags(&m, &["sync", "all", "any", "uni", "ballot"])?;
                if !m.has("sync") {
                    return self.fail("only vote.sync is supported");
                }
                let mode = if m.has("all") {
                    VoteMode::All
                } else if m.has("any") {
                    VoteMode::Any
                } else if m.has("uni") {
                    VoteMode::Uni
                } else if m.has("ballot") {
                    VoteMode::Ballot
                } else {
                    return self.fail("vote.sync needs .all, .any, .uni or .ballot");
                };
                self.arity(&raws, 3)?;
                let (a, negate) = match &raws[1] {
                    Raw::Not(w) => (self.src(&Raw::Word(w.clone()), Ty::Pred)?, true),
                    r => (self.src(r, Ty::Pred)?, false),
                };
                Ok(Op::Vote {
                    mode,
                    dst: self.reg(&raws[0])?,
                    a,
                    negate,
                    mask: self.src(&raws[2], Ty::U32)?,
                })
            }
            _ => self.fail(format!("unsupported instruction {opcode}")),
        }
    }

    fn arith(&self, base: &str, m: Mods, raws: Vec<Raw>) -> PResult<Op> {
        let ty = self.one_type(&m)?;
        let three = matches!(base, "mad" | "fma");
        self.arity(&raws, if three { 4 } else { 3 })?;
        let dst = self.reg(&raws[0])?;
        if ty.float() {
            self.check_flags(&m, &["ftz", "sat", "approx", "full"])?;
            if matches!(ty, Ty::F16 | Ty::BF16) {
                return self.fail("16-bit float arithmetic is not supported");
            }
            let rnd = m.rnd.unwrap_or(Rnd::None);
            if ty == Ty::F64 && !matches!(rnd, Rnd::None | Rnd::Rn) {
                return self.fail("f64 arithmetic with directed rounding is not supported");
            }
            let a = self.src(&raws[1], ty)?;
            let b = self.src(&raws[2], ty)?;
            let op = match base {
                "add" => FOp::Add,
                "sub" => FOp::Sub,
                "mul" => FOp::Mul,
                "div" => {
                    let approx = m.has("approx") || m.has("full");
                    if !approx && rnd == Rnd::None {
                        return self.fail("div.f32 needs .approx, .full or a rounding");
                    }
                    FOp::Div
                }
                "min" => FOp::Min,
                "max" => FOp::Max,
                "mad" | "fma" => {
                    if base == "fma" && rnd == Rnd::None {
                        return self.fail("fma needs a rounding modifier");
                    }
                    return Ok(Op::Fma {
                        ty,
                        rnd,
                        ftz: m.has("ftz"),
                        sat: m.has("sat"),
                        dst,
                        a,
                        b,
                        c: self.src(&raws[3], ty)?,
                    });
                }
                _ => return self.fail(format!("{base} has no floating-point form")),
            };
            return Ok(Op::Float {
                op,
                ty,
                rnd,
                ftz: m.has("ftz"),
                sat: m.has("sat"),
                approx: m.has("approx") || m.has("full"),
                dst,
                a,
                b,
            });
        }
        self.check_flags(&m, &["lo", "hi", "wide", "sat"])?;
        if base == "fma" {
            return self.fail("fma is floating point only");
        }
        let mode = if m.has("hi") {
            MulMode::Hi
        } else if m.has("wide") {
            MulMode::Wide
        } else {
            MulMode::Lo
        };
        if matches!(base, "mul" | "mad") && !(m.has("lo") || m.has("hi") || m.has("wide")) {
            return self.fail(format!("integer {base} needs .lo, .hi or .wide"));
        }
        if mode == MulMode::Wide && ty.bits() > 32 {
            return self.fail(".wide needs a 16- or 32-bit type");
        }
        if m.has("sat") && !(ty == Ty::S32 && matches!(base, "add" | "sub" | "mad")) {
            return self.fail(".sat is for s32 add, sub and mad.hi");
        }
        let op = match base {
            "add" => IntOp::Add,
            "sub" => IntOp::Sub,
            "mul" => IntOp::Mul,
            "mad" => IntOp::Mad,
            "div" => IntOp::Div,
            "rem" => IntOp::Rem,
            "min" => IntOp::Min,
            "max" => IntOp::Max,
            "and" => IntOp::And,
            "or" => IntOp::Or,
            "xor" => IntOp::Xor,
            "shl" => IntOp::Shl,
            _ => IntOp::Shr,
        };
        let b_ty = if matches!(op, IntOp::Shl | IntOp::Shr) {
            Ty::U32
        } else {
            ty
        };
        let c_ty = if mode == MulMode::Wide && op == IntOp::Mad {
            wide(ty)
        } else {
            ty
        };
        Ok(Op::Int {
            op,
            ty,
            mode,
            sat: m.has("sat"),
            dst,
            a: self.src(&raws[1], ty)?,
            b: self.src(&raws[2], b_ty)?,
            c: if three {
                Some(self.src(&raws[3], c_ty)?)
            } else {
                None
            },
        })
    }

    fn unary(&self, base: &str, m: Mods, raws: Vec<Raw>) -> PResult<Op> {
        let ty = self.one_type(&m)?;
        self.arity(&raws, 2)?;
        let dst = self.reg(&raws[0])?;
        let a = self.src(&raws[1], ty)?;
        if ty.float() {
            self.check_flags(&m, &["ftz", "approx", "full"])?;
            if ty != Ty::F32 && !(ty == Ty::F64 && matches!(base, "neg" | "abs" | "sqrt" | "rcp")) {
                return self.fail(format!("{base}.{ty:?} is not supported"));
            }
            let rnd = m.rnd.unwrap_or(Rnd::None);
            let approx = m.has("approx");
            let op = match base {
                "neg" => FUnOp::Neg,
                "abs" => FUnOp::Abs,
                "rcp" => FUnOp::Rcp,
                "sqrt" => FUnOp::Sqrt,
                "rsqrt" => FUnOp::Rsqrt,
                "ex2" => FUnOp::Ex2,
                "lg2" => FUnOp::Lg2,
                "sin" => FUnOp::Sin,
                "cos" => FUnOp::Cos,
                _ => return self.fail(format!("{base} has no floating-point form")),
            };
            let needs_approx = matches!(
                op,
                FUnOp::Rsqrt | FUnOp::Ex2 | FUnOp::Lg2 | FUnOp::Sin | FUnOp::Cos
            );
            if needs_approx && !approx {
                return self.fail(format!("{base}.f32 needs .approx"));
            }
            if matches!(op, FUnOp::Rcp | FUnOp::Sqrt) && !approx && rnd == Rnd::None {
                return self.fail(format!("{base}.f32 needs .approx or a rounding"));
            }
            if ty == Ty::F64 && !matches!(rnd, Rnd::None | Rnd::Rn) {
                return self.fail("f64 with directed rounding is not supported");
            }
            return Ok(Op::FUn {
                op,
                ty,
                rnd,
                ftz: m.has("ftz"),
                approx,
                dst,
                a,
            });
        }
        self.check_flags(&m, &[])?;
        let op = match base {
            "neg" => UnOp::Neg,
            "abs" => UnOp::Abs,
            "not" => UnOp::Not,
            "popc" => UnOp::Popc,
            "clz" => UnOp::Clz,
            "brev" => UnOp::Brev,
            _ => return self.fail(format!("{base} is floating point only")),
        };
        Ok(Op::Un { op, ty, dst, a })
    }

    fn atom(&self, base: &str, m: Mods, raws: Vec<Raw>) -> PResult<Op> {
        let op = m.flags.iter().find_map(|f| {
            Some(match f.as_str() {
                "add" => AtomOp::Add,
                "min" => AtomOp::Min,
                "max" => AtomOp::Max,
                "cas" => AtomOp::Cas,
                "exch" => AtomOp::Exch,
                "and" => AtomOp::And,
                "or" => AtomOp::Or,
                "xor" => AtomOp::Xor,
                "inc" => AtomOp::Inc,
                "dec" => AtomOp::Dec,
                _ => return None,
            })
        });
        let Some(op) = op else {
            return self.fail(format!("{base} needs an operation"));
        };
        self.check_flags(
            &m,
            &[
                "add", "min", "max", "cas", "exch", "and", "or", "xor", "inc", "dec", "relaxed",
                "acquire", "release", "acq_rel", "gpu", "cta", "sys",
            ],
        )?;
        let ty = self.one_type(&m)?;
        if ty.float() && !(ty == Ty::F32 && matches!(op, AtomOp::Add | AtomOp::Exch)) {
            return self.fail(format!("{base}.{op:?}.{ty:?} is not supported"));
        }
        if ty.bits() < 32 {
            return self.fail(format!(
                "{base} on {}-bit values is not supported",
                ty.bits()
            ));
        }
        let space = m.space.unwrap_or(Space::Generic);
        if !matches!(space, Space::Global | Space::Shared | Space::Generic) {
            return self.fail(format!("{base} needs .global or .shared"));
        }
        let cas = op == AtomOp::Cas;
        if base == "red" {
            if cas || op == AtomOp::Exch {
                return self.fail("red has no cas or exch");
            }
            self.arity(&raws, 2)?;
            return Ok(Op::Atom {
                space,
                op,
                ty,
                dst: None,
                addr: self.addr(&raws[0])?,
                b: self.src(&raws[1], ty)?,
                c: None,
            });
        }
        self.arity(&raws, if cas { 4 } else { 3 })?;
        Ok(Op::Atom {
            space,
            op,
            ty,
            dst: Some(self.reg(&raws[0])?),
            addr: self.addr(&raws[1])?,
            b: self.src(&raws[2], ty)?,
            c: if cas {
                Some(self.src(&raws[3], ty)?)
            } else {
                None
            },
        })
    }
}

fn wide(ty: Ty) -> Ty {
    match ty {
        Ty::U16 => Ty::U32,
        Ty::S16 => Ty::S32,
        Ty::U32 => Ty::U64,
        Ty::S32 => Ty::S64,
        t => t,
    }
}

/// The lane type when `n` values are packed into `ty`.
fn lane_ty(ty: Ty, n: usize) -> Option<Ty> {
    match (ty.bits(), n) {
        (64, 2) => Some(Ty::B32),
        (64, 4) | (32, 2) => Some(Ty::B16),
        (32, 4) | (16, 2) => Some(Ty::B8),
        _ => None,
    }
}

fn special(w: &str) -> Option<Special> {
    let dim = |s: &str| match s {
        "x" => Some(0),
        "y" => Some(1),
        "z" => Some(2),
        _ => None,
    };
    if let Some((reg, d)) = w.split_once('.') {
        let d = dim(d)?;
        return Some(match reg {
            "%tid" => Special::Tid(d),
            "%ntid" => Special::Ntid(d),
            "%ctaid" => Special::Ctaid(d),
            "%nctaid" => Special::Nctaid(d),
            _ => return None,
        });
    }
    Some(match w {
        "%laneid" => Special::Laneid,
        "%warpid" => Special::Warpid,
        "%nwarpid" => Special::Nwarpid,
        "WARP_SZ" => Special::WarpSize,
        "%dynamic_smem_size" => Special::DynamicSmemSize,
        _ => return None,
    })
}
