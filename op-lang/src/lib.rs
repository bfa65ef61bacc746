//! The op language of the differential checker, on its own so that the fuzz targets can
//! instrument it while the checker's oracle code is not (see `fuzz/sancov-scope.sh`):
//!
//! - [`op`]: symbolic ops and steps (addresses relative to live state) and their `.ops` text
//!   form, one op per line;
//! - [`bytes`]: the fuzzers' byte encoding, `decode` (with the pinned `arbitrary`) and its exact
//!   inverse `encode`, plus the `text` target's round trip.
//!
//! ```
//! use op_lang::{bytes, op};
//!
//! let steps = op::parse_ops("spawn\nmmap s=0 addr=0x0 len=0x2000 prot=0x3 flags=0x22\n").unwrap();
//! assert_eq!(bytes::decode(&bytes::encode(&steps)), steps);
//! assert_eq!(op::parse_ops(&op::print_ops(&steps)).unwrap(), steps);
//! ```

pub mod bytes;
pub mod op;

pub use op::{Addr, Op, Step, parse_ops, print_ops};
