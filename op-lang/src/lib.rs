//! The op language of the differential checker, on its own so that the fuzz targets can
//! instrument it while the checker's oracle code is not (see `fuzz/sancov-scope.sh`):
//!
//! - [`op`]: symbolic ops and steps (addresses relative to live state) and their `.ops` text
//!   form, one op per line;
//! - [`sequence`]: the world a sequence runs in (pool size, ASID limit) and the steps, with the
//!   versioned header of both formats;
//! - [`bytes`]: the fuzzers' byte encoding, `decode` (with the pinned `arbitrary`) and its exact
//!   inverse `encode`, plus the `text` target's round trip.
//!
//! ```
//! use op_lang::{bytes, op};
//!
//! let text = "pool frames=64 asids=3\nspawn\nmmap s=0 addr=0x0 len=0x2000 prot=0x3 flags=0x22\n";
//! let sequence = op_lang::parse_sequence(text).unwrap();
//! assert_eq!(sequence.config.asids, 3);
//! assert_eq!(bytes::decode(&bytes::encode(&sequence)), sequence);
//! assert_eq!(op_lang::print_sequence(&sequence), text);
//! ```

pub mod bytes;
pub mod op;
pub mod sequence;

pub use op::{Addr, Op, Step, parse_ops, print_ops};
pub use sequence::{
    Config, Sequence, first_access_beyond, fold_accesses_onto, parse_sequence, print_sequence,
};
