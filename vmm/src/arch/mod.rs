//! Architecture support. Only ARMv7-A with short descriptors (no LPAE) for now.

pub mod armv7;
