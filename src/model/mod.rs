//! The shared data contracts, without I/O: window records, series keys, incidents, the document shapes
//! (to and from JSON) and time as the documents write it.

pub mod feedback;
pub mod incident;
pub mod time;
pub mod window;
