//! The op language: one variant per operation of semantics.md, addresses mostly relative to
//! live state, and the `.ops` text form (one op per line, `name key=value ...`).

use std::fmt;
use std::str::FromStr;

use arbitrary::Arbitrary;

/// An address, chosen relative to the live state so that most ops do something.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Arbitrary)]
pub enum Addr {
    /// Word `word` of page `page` of the space's region number `region` (modulo the count).
    InRegion {
        /// Region index.
        region: u8,
        /// Page inside it.
        page: u8,
        /// Word inside the page.
        word: u8,
    },
    /// The heap base plus pages.
    Heap(u8),
    /// The mmap-area base plus pages.
    Mmap(u16),
    /// A raw value ("wild").
    Raw(u32),
    /// Page `page` of the `vmalloc` allocation number `alloc` (modulo the count).
    Vmalloc {
        /// Allocation index.
        alloc: u8,
        /// Page inside it.
        page: u8,
    },
}

/// One operation. The first variant is the simplest: an all-zero fuzzer input decodes to it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Arbitrary)]
pub enum Op {
    /// `spawn`: a new empty space.
    Spawn,
    /// `fork` space `s`.
    Fork {
        /// Space index (modulo the live count).
        s: u8,
    },
    /// `exit` space `s`.
    Exit {
        /// Space index.
        s: u8,
    },
    /// `mmap`.
    Mmap {
        /// Space index.
        s: u8,
        /// Address (hint or fixed).
        addr: Addr,
        /// Length in bytes.
        len: u32,
        /// `PROT_*` bits.
        prot: u32,
        /// `MAP_*` flags.
        flags: u32,
    },
    /// `munmap`.
    Munmap {
        /// Space index.
        s: u8,
        /// Address.
        addr: Addr,
        /// Length in bytes.
        len: u32,
    },
    /// `mprotect`.
    Mprotect {
        /// Space index.
        s: u8,
        /// Address.
        addr: Addr,
        /// Length in bytes.
        len: u32,
        /// `PROT_*` bits.
        prot: u32,
    },
    /// `brk`.
    Brk {
        /// Space index.
        s: u8,
        /// The new break.
        addr: Addr,
    },
    /// `mremap`.
    Mremap {
        /// Space index.
        s: u8,
        /// Old address.
        addr: Addr,
        /// Old length.
        old_len: u32,
        /// New length.
        new_len: u32,
        /// `MREMAP_*` flags.
        flags: u32,
        /// Target for `MREMAP_FIXED`.
        new_addr: Addr,
    },
    /// `shmget`.
    ShmGet {
        /// Key (0 = `IPC_PRIVATE`).
        key: i32,
        /// Size in bytes.
        size: u32,
        /// `IPC_*` flags.
        flags: u32,
    },
    /// `shmat`.
    ShmAt {
        /// Space index.
        s: u8,
        /// Segment id.
        id: u32,
        /// Address, or none for first fit.
        addr: Option<Addr>,
        /// `SHM_*` flags.
        flags: u32,
    },
    /// `shmdt`.
    ShmDt {
        /// Space index.
        s: u8,
        /// The attachment's address.
        addr: Addr,
    },
    /// `shmctl`.
    ShmCtl {
        /// Segment id.
        id: u32,
        /// Command (`IPC_RMID` = 0, `IPC_STAT` = 2).
        cmd: u32,
    },
    /// A device mapping of the device window's page `page` onwards.
    MapDevice {
        /// Space index.
        s: u8,
        /// Virtual address.
        addr: Addr,
        /// First page of the device window (0x4800_0000, 4096 pages) to map, modulo 4096.
        /// A range that would leave RAM (0x5000_0000) is skipped.
        page: u16,
        /// Length in bytes.
        len: u32,
        /// `PROT_*` bits.
        prot: u32,
    },
    /// `vmalloc` of `len` bytes (kernel).
    Vmalloc {
        /// Length in bytes.
        len: u32,
    },
    /// `vfree`.
    Vfree {
        /// Address (normally an allocation's first address).
        addr: Addr,
    },
    /// A word read.
    Read {
        /// Space index.
        s: u8,
        /// Address.
        addr: Addr,
        /// Kernel mode (PL1) instead of user mode.
        kernel: bool,
        /// The CPU it runs on (semantics.md section 14). Not read by `arbitrary`: the byte
        /// format reads it after the step, and only when the sequence has several CPUs.
        #[arbitrary(default)]
        cpu: u8,
    },
    /// A word write.
    Write {
        /// Space index.
        s: u8,
        /// Address.
        addr: Addr,
        /// The value.
        value: u32,
        /// Kernel mode.
        kernel: bool,
        /// The CPU it runs on.
        #[arbitrary(default)]
        cpu: u8,
    },
    /// An instruction fetch.
    Exec {
        /// Space index.
        s: u8,
        /// Address.
        addr: Addr,
        /// Kernel mode.
        kernel: bool,
        /// The CPU it runs on.
        #[arbitrary(default)]
        cpu: u8,
    },
}

impl Op {
    /// The CPU an access runs on; `None` for every other op (they run on CPU 0).
    #[must_use]
    pub fn cpu(&self) -> Option<u8> {
        match *self {
            Op::Read { cpu, .. } | Op::Write { cpu, .. } | Op::Exec { cpu, .. } => Some(cpu),
            _ => None,
        }
    }

    /// The CPU field of an access, to set it; `None` for every other op.
    pub fn cpu_mut(&mut self) -> Option<&mut u8> {
        match self {
            Op::Read { cpu, .. } | Op::Write { cpu, .. } | Op::Exec { cpu, .. } => Some(cpu),
            _ => None,
        }
    }
}

/// An op and, optionally, the index of its frame allocation that the machine refuses.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Arbitrary)]
pub struct Step {
    /// The op.
    pub op: Op,
    /// Refuse this allocation (0-based) of the op.
    pub refuse: Option<u8>,
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::InRegion { region, page, word } => write!(f, "r{region}+{page}p+{word}w"),
            Addr::Heap(p) => write!(f, "heap+{p}p"),
            Addr::Mmap(p) => write!(f, "mmap+{p}p"),
            Addr::Raw(v) => write!(f, "{v:#x}"),
            Addr::Vmalloc { alloc, page } => write!(f, "vm{alloc}+{page}p"),
        }
    }
}

impl FromStr for Addr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("bad address `{s}` (r<n>+<p>p+<w>w, heap+<p>p, mmap+<p>p or a number)");
        if let Some(rest) = s.strip_prefix("heap+").and_then(|r| r.strip_suffix('p')) {
            return rest.parse().map(Addr::Heap).map_err(|_| bad());
        }
        if let Some(rest) = s.strip_prefix("mmap+").and_then(|r| r.strip_suffix('p')) {
            return rest.parse().map(Addr::Mmap).map_err(|_| bad());
        }
        if let Some(rest) = s.strip_prefix("vm") {
            let (alloc, page) = rest.split_once('+').ok_or_else(bad)?;
            let alloc = alloc.parse().map_err(|_| bad())?;
            let page = page
                .strip_suffix('p')
                .and_then(|p| p.parse().ok())
                .ok_or_else(bad)?;
            return Ok(Addr::Vmalloc { alloc, page });
        }
        if let Some(rest) = s.strip_prefix('r') {
            let mut parts = rest.split('+');
            let region = parts.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
            let page = parts
                .next()
                .and_then(|x| x.strip_suffix('p'))
                .and_then(|x| x.parse().ok())
                .ok_or_else(bad)?;
            let word = parts
                .next()
                .and_then(|x| x.strip_suffix('w'))
                .and_then(|x| x.parse().ok())
                .ok_or_else(bad)?;
            return if parts.next().is_none() {
                Ok(Addr::InRegion { region, page, word })
            } else {
                Err(bad())
            };
        }
        parse_u32(s).map(Addr::Raw).ok_or_else(bad)
    }
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Spawn => write!(f, "spawn"),
            Op::Fork { s } => write!(f, "fork s={s}"),
            Op::Exit { s } => write!(f, "exit s={s}"),
            Op::Mmap {
                s,
                addr,
                len,
                prot,
                flags,
            } => {
                write!(
                    f,
                    "mmap s={s} addr={addr} len={len:#x} prot={prot:#x} flags={flags:#x}"
                )
            }
            Op::Munmap { s, addr, len } => write!(f, "munmap s={s} addr={addr} len={len:#x}"),
            Op::Mprotect { s, addr, len, prot } => {
                write!(f, "mprotect s={s} addr={addr} len={len:#x} prot={prot:#x}")
            }
            Op::Brk { s, addr } => write!(f, "brk s={s} addr={addr}"),
            Op::Mremap {
                s,
                addr,
                old_len,
                new_len,
                flags,
                new_addr,
            } => write!(
                f,
                "mremap s={s} addr={addr} old_len={old_len:#x} new_len={new_len:#x} flags={flags:#x} new_addr={new_addr}"
            ),
            Op::ShmGet { key, size, flags } => {
                write!(f, "shmget key={key} size={size:#x} flags={flags:#o}")
            }
            Op::ShmAt { s, id, addr, flags } => match addr {
                Some(a) => write!(f, "shmat s={s} id={id} addr={a} flags={flags:#o}"),
                None => write!(f, "shmat s={s} id={id} addr=none flags={flags:#o}"),
            },
            Op::ShmDt { s, addr } => write!(f, "shmdt s={s} addr={addr}"),
            Op::ShmCtl { id, cmd } => write!(f, "shmctl id={id} cmd={cmd}"),
            Op::Vmalloc { len } => write!(f, "vmalloc len={len:#x}"),
            Op::Vfree { addr } => write!(f, "vfree addr={addr}"),
            Op::MapDevice {
                s,
                addr,
                page,
                len,
                prot,
            } => {
                write!(
                    f,
                    "mapdev s={s} addr={addr} page={page} len={len:#x} prot={prot:#x}"
                )
            }
            Op::Read {
                s,
                addr,
                kernel,
                cpu,
            } => {
                write!(f, "read s={s} addr={addr} mode={}", mode(*kernel))?;
                on_cpu(f, *cpu)
            }
            Op::Write {
                s,
                addr,
                value,
                kernel,
                cpu,
            } => {
                write!(
                    f,
                    "write s={s} addr={addr} value={value:#x} mode={}",
                    mode(*kernel)
                )?;
                on_cpu(f, *cpu)
            }
            Op::Exec {
                s,
                addr,
                kernel,
                cpu,
            } => {
                write!(f, "exec s={s} addr={addr} mode={}", mode(*kernel))?;
                on_cpu(f, *cpu)
            }
        }
    }
}

/// ` cpu=K` after an access on a CPU other than 0 (CPU 0 is said by saying nothing).
fn on_cpu(f: &mut fmt::Formatter<'_>, cpu: u8) -> fmt::Result {
    if cpu != 0 {
        write!(f, " cpu={cpu}")?;
    }
    Ok(())
}

fn mode(kernel: bool) -> &'static str {
    if kernel { "kernel" } else { "user" }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.op)?;
        if let Some(k) = self.refuse {
            write!(f, " refuse={k}")?;
        }
        Ok(())
    }
}

/// The `key=value` fields of one line; each key may appear once, and every key must be one the
/// op reads ([`Fields::finish`]).
struct Fields<'a> {
    pairs: Vec<(&'a str, &'a str)>,
    /// Which pairs the op read.
    read: core::cell::RefCell<Vec<bool>>,
}

impl<'a> Fields<'a> {
    fn new(pairs: Vec<(&'a str, &'a str)>) -> Result<Self, String> {
        for (i, (k, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(earlier, _)| earlier == k) {
                return Err(format!("`{k}=` given twice"));
            }
        }
        let read = core::cell::RefCell::new(vec![false; pairs.len()]);
        Ok(Self { pairs, read })
    }
    fn get(&self, key: &str) -> Result<&'a str, String> {
        let i = self
            .pairs
            .iter()
            .position(|(k, _)| *k == key)
            .ok_or_else(|| format!("missing `{key}=`"))?;
        self.read.borrow_mut()[i] = true;
        Ok(self.pairs[i].1)
    }
    /// Whether `key` is given (and reads it).
    fn has(&self, key: &str) -> bool {
        self.get(key).is_ok()
    }
    /// An error naming the first key the op did not read: a misspelled key never passes as
    /// an op without it.
    fn finish(&self, op: &str) -> Result<(), String> {
        let read = self.read.borrow();
        match self.pairs.iter().zip(read.iter()).find(|(_, r)| !**r) {
            Some(((k, _), _)) => Err(format!("unknown key `{k}=` for `{op}`")),
            None => Ok(()),
        }
    }
    fn num(&self, key: &str) -> Result<u32, String> {
        let v = self.get(key)?;
        let parsed = match v.strip_prefix("0o") {
            Some(oct) => u32::from_str_radix(oct, 8).ok(),
            None => parse_u32(v),
        };
        parsed.ok_or_else(|| format!("`{key}={v}` is not a number"))
    }
    fn small(&self, key: &str) -> Result<u8, String> {
        u8::try_from(self.num(key)?).map_err(|_| format!("`{key}` must be below 256"))
    }
    fn addr(&self, key: &str) -> Result<Addr, String> {
        self.get(key)?.parse()
    }
    /// `cpu=K` (0 when left out); whether the sequence has that CPU is checked with its
    /// configuration ([`crate::parse_sequence`]).
    fn cpu(&self) -> Result<u8, String> {
        if self.has("cpu") {
            self.small("cpu")
        } else {
            Ok(0)
        }
    }
    fn kernel(&self) -> Result<bool, String> {
        match self.get("mode")? {
            "kernel" => Ok(true),
            "user" => Ok(false),
            other => Err(format!("`mode={other}`: user or kernel")),
        }
    }
}

impl FromStr for Step {
    type Err = String;
    fn from_str(line: &str) -> Result<Self, String> {
        let mut words = line.split_whitespace();
        let name = words.next().ok_or("empty line")?;
        let mut fields = Vec::new();
        for w in words {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| format!("`{w}` is not key=value"))?;
            fields.push((k, v));
        }
        let f = Fields::new(fields)?;
        let op = match name {
            "spawn" => Op::Spawn,
            "fork" => Op::Fork { s: f.small("s")? },
            "exit" => Op::Exit { s: f.small("s")? },
            "mmap" => Op::Mmap {
                s: f.small("s")?,
                addr: f.addr("addr")?,
                len: f.num("len")?,
                prot: f.num("prot")?,
                flags: f.num("flags")?,
            },
            "munmap" => Op::Munmap {
                s: f.small("s")?,
                addr: f.addr("addr")?,
                len: f.num("len")?,
            },
            "mprotect" => Op::Mprotect {
                s: f.small("s")?,
                addr: f.addr("addr")?,
                len: f.num("len")?,
                prot: f.num("prot")?,
            },
            "brk" => Op::Brk {
                s: f.small("s")?,
                addr: f.addr("addr")?,
            },
            "mremap" => Op::Mremap {
                s: f.small("s")?,
                addr: f.addr("addr")?,
                old_len: f.num("old_len")?,
                new_len: f.num("new_len")?,
                flags: f.num("flags")?,
                new_addr: f.addr("new_addr")?,
            },
            "shmget" => {
                let key = f.get("key")?;
                Op::ShmGet {
                    key: key
                        .parse()
                        .map_err(|_| format!("`key={key}` is not a number"))?,
                    size: f.num("size")?,
                    flags: f.num("flags")?,
                }
            }
            "shmat" => Op::ShmAt {
                s: f.small("s")?,
                id: f.num("id")?,
                addr: match f.get("addr")? {
                    "none" => None,
                    a => Some(a.parse()?),
                },
                flags: f.num("flags")?,
            },
            "shmdt" => Op::ShmDt {
                s: f.small("s")?,
                addr: f.addr("addr")?,
            },
            "mapdev" => Op::MapDevice {
                s: f.small("s")?,
                addr: f.addr("addr")?,
                page: u16::try_from(f.num("page")?)
                    .map_err(|_| "`page` must be below 65536".to_string())?,
                len: f.num("len")?,
                prot: f.num("prot")?,
            },
            "vmalloc" => Op::Vmalloc { len: f.num("len")? },
            "vfree" => Op::Vfree {
                addr: f.addr("addr")?,
            },
            "shmctl" => Op::ShmCtl {
                id: f.num("id")?,
                cmd: f.num("cmd")?,
            },
            "read" => Op::Read {
                s: f.small("s")?,
                addr: f.addr("addr")?,
                kernel: f.kernel()?,
                cpu: f.cpu()?,
            },
            "write" => Op::Write {
                s: f.small("s")?,
                addr: f.addr("addr")?,
                value: f.num("value")?,
                kernel: f.kernel()?,
                cpu: f.cpu()?,
            },
            "exec" => Op::Exec {
                s: f.small("s")?,
                addr: f.addr("addr")?,
                kernel: f.kernel()?,
                cpu: f.cpu()?,
            },
            other => return Err(format!("unknown op `{other}`")),
        };
        let refuse = if f.has("refuse") {
            Some(f.small("refuse")?)
        } else {
            None
        };
        f.finish(name)?;
        Ok(Step { op, refuse })
    }
}

/// Parses a `.ops` file: one step per line; `#` starts a comment; blank lines are skipped.
pub fn parse_ops(text: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        steps.push(
            line.parse()
                .map_err(|e| format!("line {}: {e}: `{}`", n + 1, raw.trim()))?,
        );
    }
    Ok(steps)
}

/// Prints steps as a `.ops` file (one per line; parsing it gives the same steps back).
#[must_use]
pub fn print_ops(steps: &[Step]) -> String {
    steps.iter().map(|s| format!("{s}\n")).collect()
}
