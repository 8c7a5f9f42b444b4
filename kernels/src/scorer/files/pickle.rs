//! A small pickle virtual machine for `torch.save`d state dicts: exactly the opcodes and
//! globals torch emits for a `state_dict` (protocols 2 to 4, Python 2's byte strings
//! included for old legacy files), and nothing that executes code: any other opcode or
//! global is a typed error naming it. Persistent ids (`BINPERSID`) become storage
//! references; `torch._utils._rebuild_tensor_v2` (and `_rebuild_tensor`,
//! `_rebuild_parameter[_with_state]`) become tensor references; `collections.OrderedDict`
//! becomes a dict.
//!
//! Containers are shared (`Rc`), as Python objects are: a memo entry fetched twice is the
//! same object, and a crafted file cannot multiply memory by re-fetching it. Every length
//! read from the file is checked against the bytes left before anything is allocated.

use std::{cell::RefCell, collections::HashMap, rc::Rc};

/// A dict's items, in insertion order (shared, as Python objects are).
pub type DictItems = Rc<RefCell<Vec<(Value, Value)>>>;

/// A pickled value.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits: its little-endian two's-complement bytes.
    Long(Vec<u8>),
    Float(f64),
    Str(String),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(DictItems),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorRef),
}

/// The callables and classes a state dict may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    /// `torch.<Kind>Storage`: the kind (`Float`, `Half`, `BFloat16`, …).
    Storage(String),
}

/// `('storage', torch.<Kind>Storage, key, location, numel[, view_metadata])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    /// `Float`, `Half`, `BFloat16`, … (the storage class name less `Storage`).
    pub kind: String,
    /// The root storage's key (`data/<key>` in a zip file).
    pub key: String,
    /// Elements of the root storage.
    pub numel: u64,
    /// Element offset of a legacy view into its root storage (0 otherwise).
    pub view_offset: u64,
}

/// A tensor over a storage: `_rebuild_tensor_v2(storage, offset, size, stride, …)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    pub storage: StorageRef,
    /// Element offset into the storage.
    pub offset: u64,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// Why a pickle could not be run.
#[derive(Debug, Clone, PartialEq)]
pub enum PickleError {
    /// An opcode outside the supported set (`name` is pickletools' name, or `unknown`).
    UnsupportedOpcode {
        opcode: u8,
        name: &'static str,
        offset: usize,
    },
    /// A global outside the supported set.
    UnsupportedGlobal { module: String, name: String },
    /// The pickle ends before its STOP.
    Truncated { offset: usize },
    /// Anything else: a stack underflow, a wrong argument, a missing memo entry.
    Malformed { offset: usize, detail: String },
}

/// The pickletools name of an opcode, for errors.
pub fn opcode_name(op: u8) -> &'static str {
    match op {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "unknown",
    }
}

/// One stack slot: a value or a MARK.
#[derive(Debug, Clone)]
enum Slot {
    Mark,
    Value(Value),
}

/// Runs the pickle starting at `data[start..]` up to its STOP; returns the value and the
/// offset just past the STOP.
pub fn load(data: &[u8], start: usize) -> Result<(Value, usize), PickleError> {
    Machine {
        data,
        pos: start,
        stack: Vec::new(),
        memo: HashMap::new(),
    }
    .run()
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Slot>,
    memo: HashMap<u64, Value>,
}

impl Machine<'_> {
    fn run(mut self) -> Result<(Value, usize), PickleError> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO n
                    self.u8()?;
                }
                0x95 => {
                    // FRAME: an 8-byte length; frames only group bytes.
                    self.take(8)?;
                }
                b'.' => {
                    let value = self.pop(at)?;
                    return Ok((value, self.pos));
                }
                b'(' => self.stack.push(Slot::Mark),
                b'}' => self.push(Value::Dict(Rc::default())),
                b']' => self.push(Value::List(Rc::default())),
                b')' => self.push(Value::Tuple(Rc::new(Vec::new()))),
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err(self.malformed(at, "stack underflow"));
                    }
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop(at)?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(Rc::new(items)));
                }
                b't' => {
                    let items = self.pop_mark(at)?;
                    self.push(Value::Tuple(Rc::new(items)));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.string(n)?;
                    self.push(Value::Str(s));
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let s = self.string(n)?;
                    self.push(Value::Str(s));
                }
                0x8d => {
                    let n = usize::try_from(self.u64()?).unwrap_or(usize::MAX);
                    let s = self.string(n)?;
                    self.push(Value::Str(s));
                }
                b'T' => {
                    let n = i32::from_le_bytes(self.array()?);
                    let n =
                        usize::try_from(n).map_err(|_| self.malformed(at, "negative length"))?;
                    let s = self.string(n)?;
                    self.push(Value::Str(s));
                }
                b'U' => {
                    let n = usize::from(self.u8()?);
                    let s = self.string(n)?;
                    self.push(Value::Str(s));
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.array()?);
                    self.push(Value::Int(i64::from(v)));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(i64::from(v)));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.array()?);
                    self.push(Value::Int(i64::from(v)));
                }
                0x8a => {
                    let n = usize::from(self.u8()?);
                    let bytes = self.take(n)?.to_vec();
                    self.push(long(bytes));
                }
                0x8b => {
                    let n = self.u32()? as usize;
                    let bytes = self.take(n)?.to_vec();
                    self.push(long(bytes));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.array()?);
                    self.push(Value::Float(v));
                }
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'N' => self.push(Value::None),
                b'q' => {
                    let i = u64::from(self.u8()?);
                    self.put(i, at)?;
                }
                b'r' => {
                    let i = u64::from(self.u32()?);
                    self.put(i, at)?;
                }
                0x94 => {
                    let i = self.memo.len() as u64;
                    self.put(i, at)?;
                }
                b'h' => {
                    let i = u64::from(self.u8()?);
                    self.get(i, at)?;
                }
                b'j' => {
                    let i = u64::from(self.u32()?);
                    self.get(i, at)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let global = global(&module, &name)?;
                    self.push(Value::Global(global));
                }
                0x93 => {
                    let name = self.pop(at)?;
                    let module = self.pop(at)?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => {
                            let global = global(&m, &n)?;
                            self.push(Value::Global(global));
                        }
                        _ => return Err(self.malformed(at, "STACK_GLOBAL of non-strings")),
                    }
                }
                b'R' => {
                    let args = self.pop(at)?;
                    let callable = self.pop(at)?;
                    let value = reduce(callable, args).map_err(|d| self.malformed(at, &d))?;
                    self.push(value);
                }
                b'b' => {
                    // BUILD: the state of an OrderedDict (`_metadata`) or of a parameter;
                    // neither changes the tensors.
                    let _state = self.pop(at)?;
                    match self.stack.last() {
                        Some(Slot::Value(_)) => {}
                        _ => return Err(self.malformed(at, "BUILD without an object")),
                    }
                }
                b's' => {
                    let value = self.pop(at)?;
                    let key = self.pop(at)?;
                    self.dict_top(at)?.borrow_mut().push((key, value));
                }
                b'u' => {
                    let items = self.pop_mark(at)?;
                    if items.len() % 2 != 0 {
                        return Err(self.malformed(at, "SETITEMS with an odd count"));
                    }
                    let dict = self.dict_top(at)?;
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        dict.borrow_mut().push((k, v));
                    }
                }
                b'a' => {
                    let value = self.pop(at)?;
                    self.list_top(at)?.borrow_mut().push(value);
                }
                b'e' => {
                    let items = self.pop_mark(at)?;
                    self.list_top(at)?.borrow_mut().extend(items);
                }
                b'Q' => {
                    let pid = self.pop(at)?;
                    let storage = persistent(pid).map_err(|d| self.malformed(at, &d))?;
                    self.push(Value::Storage(storage));
                }
                other => {
                    return Err(PickleError::UnsupportedOpcode {
                        opcode: other,
                        name: opcode_name(other),
                        offset: at,
                    })
                }
            }
        }
    }

    fn malformed(&self, offset: usize, detail: &str) -> PickleError {
        PickleError::Malformed {
            offset,
            detail: detail.to_string(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(PickleError::Truncated { offset: self.pos })?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, PickleError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self, n: usize) -> Result<String, PickleError> {
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }

    /// A newline-terminated line (GLOBAL's operands).
    fn line(&mut self) -> Result<String, PickleError> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated { offset: self.pos })?;
        let s = self.string(n)?;
        self.pos += 1;
        Ok(s)
    }

    fn push(&mut self, value: Value) {
        self.stack.push(Slot::Value(value));
    }

    fn pop(&mut self, at: usize) -> Result<Value, PickleError> {
        match self.stack.pop() {
            Some(Slot::Value(v)) => Ok(v),
            Some(Slot::Mark) => Err(self.malformed(at, "unexpected MARK")),
            None => Err(self.malformed(at, "stack underflow")),
        }
    }

    fn pop_mark(&mut self, at: usize) -> Result<Vec<Value>, PickleError> {
        let mark = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or_else(|| self.malformed(at, "no MARK"))?;
        let items = self
            .stack
            .split_off(mark + 1)
            .into_iter()
            .filter_map(|s| match s {
                Slot::Value(v) => Some(v),
                Slot::Mark => None,
            })
            .collect();
        self.stack.pop();
        Ok(items)
    }

    fn dict_top(&self, at: usize) -> Result<DictItems, PickleError> {
        match self.stack.last() {
            Some(Slot::Value(Value::Dict(d))) => Ok(Rc::clone(d)),
            _ => Err(self.malformed(at, "SETITEM(S) on a non-dict")),
        }
    }

    fn list_top(&self, at: usize) -> Result<Rc<RefCell<Vec<Value>>>, PickleError> {
        match self.stack.last() {
            Some(Slot::Value(Value::List(l))) => Ok(Rc::clone(l)),
            _ => Err(self.malformed(at, "APPEND(S) on a non-list")),
        }
    }

    fn put(&mut self, index: u64, at: usize) -> Result<(), PickleError> {
        match self.stack.last() {
            Some(Slot::Value(v)) => {
                self.memo.insert(index, v.clone());
                Ok(())
            }
            _ => Err(self.malformed(at, "memoizing a MARK or an empty stack")),
        }
    }

    fn get(&mut self, index: u64, at: usize) -> Result<(), PickleError> {
        let value = self
            .memo
            .get(&index)
            .cloned()
            .ok_or_else(|| self.malformed(at, &format!("memo entry {index} is not set")))?;
        self.push(value);
        Ok(())
    }
}

fn long(bytes: Vec<u8>) -> Value {
    if bytes.len() <= 8 {
        let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
        let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
        buf[..bytes.len()].copy_from_slice(&bytes);
        Value::Int(i64::from_le_bytes(buf))
    } else {
        Value::Long(bytes)
    }
}

fn global(module: &str, name: &str) -> Result<Global, PickleError> {
    let g = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("torch", storage) if storage.ends_with("Storage") && storage.len() > 7 => {
            Global::Storage(storage.trim_end_matches("Storage").to_string())
        }
        _ => {
            return Err(PickleError::UnsupportedGlobal {
                module: module.to_string(),
                name: name.to_string(),
            })
        }
    };
    Ok(g)
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

fn as_usizes(v: &Value) -> Option<Vec<usize>> {
    let items: Vec<Value> = match v {
        Value::Tuple(t) => t.as_ref().clone(),
        Value::List(l) => l.borrow().clone(),
        _ => return None,
    };
    items
        .iter()
        .map(|x| as_u64(x).and_then(|u| usize::try_from(u).ok()))
        .collect()
}

/// `('storage', torch.<Kind>Storage, key, location, numel[, view_metadata])`.
fn persistent(pid: Value) -> Result<StorageRef, String> {
    let Value::Tuple(t) = pid else {
        return Err("persistent id is not a tuple".into());
    };
    match t.as_slice() {
        [Value::Str(tag), Value::Global(Global::Storage(kind)), key, _location, numel, rest @ ..]
            if tag == "storage" && rest.len() <= 1 =>
        {
            let key = match key {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                _ => return Err("storage key is not a string".into()),
            };
            let numel = as_u64(numel).ok_or("storage size is not a count")?;
            let view_offset = match rest.first() {
                None | Some(Value::None) => 0,
                // Legacy views: (view_key, offset, view_size) into the root storage.
                Some(Value::Tuple(v)) => match v.as_slice() {
                    [_, offset, _] => as_u64(offset).ok_or("view offset is not a count")?,
                    _ => return Err("storage view metadata is not a 3-tuple".into()),
                },
                Some(_) => return Err("storage view metadata is not a tuple".into()),
            };
            Ok(StorageRef {
                kind: kind.clone(),
                key,
                numel,
                view_offset,
            })
        }
        _ => Err(
            "persistent id is not ('storage', torch.<Kind>Storage, key, location, numel)".into(),
        ),
    }
}

fn reduce(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Global(g) = callable else {
        return Err("REDUCE of a non-global".into());
    };
    let Value::Tuple(args) = args else {
        return Err("REDUCE arguments are not a tuple".into());
    };
    match g {
        Global::OrderedDict => {
            if !args.is_empty() {
                return Err("OrderedDict with arguments".into());
            }
            Ok(Value::Dict(Rc::default()))
        }
        Global::RebuildTensor | Global::RebuildTensorV2 => match args.as_slice() {
            [Value::Storage(storage), offset, size, stride, ..] => Ok(Value::Tensor(TensorRef {
                storage: storage.clone(),
                offset: as_u64(offset).ok_or("tensor offset is not a count")?,
                shape: as_usizes(size).ok_or("tensor size is not a tuple of counts")?,
                stride: as_usizes(stride).ok_or("tensor stride is not a tuple of counts")?,
            })),
            _ => Err("_rebuild_tensor arguments are not (storage, offset, size, stride, …)".into()),
        },
        Global::RebuildParameter | Global::RebuildParameterWithState => match args.first() {
            Some(Value::Tensor(t)) => Ok(Value::Tensor(t.clone())),
            _ => Err("_rebuild_parameter of a non-tensor".into()),
        },
        Global::Storage(kind) => Err(format!("calling torch.{kind}Storage")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_code_execution_globals() {
        let pickle = b"\x80\x02cos\nsystem\nq\x00.";
        assert!(matches!(
            load(pickle, 0),
            Err(PickleError::UnsupportedGlobal { module, name }) if module == "os" && name == "system"
        ));
    }

    #[test]
    fn refuses_unknown_opcodes_by_name() {
        assert!(matches!(
            load(b"\x80\x02\x81.", 0),
            Err(PickleError::UnsupportedOpcode {
                opcode: 0x81,
                name: "NEWOBJ",
                offset: 2
            })
        ));
    }

    #[test]
    fn reads_small_values() {
        // {'a': [1, -2, 3.5, True, None, 'é']} with LONG1 for -2.
        let mut p = vec![
            0x80, 2, b'}', b'q', 0, b'X', 1, 0, 0, 0, b'a', b']', b'(', b'K', 1,
        ];
        p.extend_from_slice(&[0x8a, 1, 0xfe, b'G']);
        p.extend_from_slice(&3.5f64.to_be_bytes());
        p.extend_from_slice(&[0x88, b'N', 0x8c, 2, 0xc3, 0xa9, b'e', b's', b'.']);
        let (v, end) = load(&p, 0).expect("pickle");
        assert_eq!(end, p.len());
        let Value::Dict(d) = v else {
            panic!("not a dict")
        };
        let d = d.borrow();
        let Value::List(l) = &d[0].1 else {
            panic!("not a list")
        };
        let l = l.borrow();
        assert!(matches!(l[1], Value::Int(-2)));
        assert!(matches!(l[2], Value::Float(f) if f == 3.5));
        assert!(matches!(&l[5], Value::Str(s) if s == "é"));
    }

    #[test]
    fn memo_refetch_does_not_copy() {
        // A list memoized then fetched many times stays one shared object.
        let mut p = vec![0x80, 2, b']', b'q', 0];
        for _ in 0..1000 {
            p.extend_from_slice(&[b'h', 0, b'a', b'h', 0]);
        }
        p.push(b'.');
        // Malformed (APPEND of the list onto itself leaves the stack unbalanced) or a value:
        // either way no blow-up and no panic.
        let _ = load(&p, 0);
    }
}
