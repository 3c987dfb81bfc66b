//! The shared data contracts, without I/O: window records, series keys, the document shape
//! (to and from JSON) and time as the documents write it.

pub mod time;
pub mod window;
