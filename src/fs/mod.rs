//! The file-system toolkit: every file that decides access is opened
//! through `secure`, every file written is replaced through `atomic`, and
//! every lock is taken through `lock`, with a deadline. One way to do each.

pub mod atomic;
pub mod lock;
pub mod secure;
