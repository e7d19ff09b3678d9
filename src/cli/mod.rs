//! The command-line tool's subcommands, one file each.

pub mod decode;
pub mod encode;
pub mod info;
pub mod io;
pub mod upscale;
