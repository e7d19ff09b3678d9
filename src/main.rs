//! The `gsimg` command-line tool.
//!
//! Exit status: 0 on success, 1 when the work failed (bad input file, limits, I/O), 2 when the
//! command line is wrong. Errors are one line on stderr: `gsimg: error: ...`.

mod cli;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use gsimg::Limits;

#[derive(Parser)]
#[command(
    name = "gsimg",
    version,
    about = "Gaussian-splatting image codec: encode pictures to .gsi, render them at any size"
)]
struct Cli {
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Encode(cli::encode::EncodeArgs),
    Decode(cli::decode::DecodeArgs),
    Info(cli::info::InfoArgs),
    Upscale(cli::upscale::UpscaleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(n) = cli.threads
        && let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
    {
        eprintln!("gsimg: error: cannot start {n} threads: {e}");
        return ExitCode::from(1);
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`gsimg info x.gsi | head`): nothing to report.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            // The chain adds context layers (file names); a cause whose text its parent already
            // shows (thiserror's `#[from]` wrappers) is not repeated.
            let mut msg = String::new();
            for cause in e.chain().map(|c| c.to_string()) {
                if !msg.contains(&cause) {
                    if !msg.is_empty() {
                        msg.push_str(": ");
                    }
                    msg.push_str(&cause);
                }
            }
            eprintln!("gsimg: error: {msg}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<()> {
    let limits = Limits::default();
    match command {
        Command::Encode(a) => cli::encode::run(a, &limits),
        Command::Decode(a) => cli::decode::run(a, &limits),
        Command::Info(a) => cli::info::run(a, &limits),
        Command::Upscale(a) => cli::upscale::run(a, &limits),
    }
}
