//! The `gsimg` command-line tool.
//!
//! Exit status: 0 on success, 1 when the work failed (bad input file, limits, I/O), 2 when the
//! command line is wrong, 130 or 143 when stopped by SIGINT or SIGTERM. Errors are one line on
//! stderr: `gsimg: error: ...`.

#![forbid(unsafe_code)]

mod common;
mod decode;
mod encode;
mod info;
mod io;
mod output;
mod report;
mod upscale;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use common::{Context, UsageError, describe, parse, usage};

#[derive(Parser)]
#[command(
    name = "gsimg",
    version,
    about = "Gaussian-splatting image codec: encode pictures to .gsi, render them at any size",
    after_help = "Exit status: 0 success, 1 the work failed, 2 wrong command line, 130/143 \
                  interrupted (SIGINT/SIGTERM)."
)]
struct Cli {
    /// Worker threads (default, and at most: the number of cores).
    #[arg(long, global = true, value_name = "N", allow_negative_numbers = true,
          value_parser = parse::at_least_one, help_heading = "Common options", display_order = 100)]
    threads: Option<u32>,
    /// Say nothing but errors (no progress, warnings or summary).
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        help_heading = "Common options",
        display_order = 101
    )]
    quiet: bool,
    /// Also say where things run and were found (the renderer, the model, ONNX Runtime).
    #[arg(
        short,
        long,
        global = true,
        help_heading = "Common options",
        display_order = 102
    )]
    verbose: bool,
    /// Replace an output that holds something else or is the input.
    ///
    /// Without it, gsimg refuses to replace a picture with encode's output, a .gsi file with a
    /// picture, or an input file; to name encode's output other than *.gsi; to write onto a
    /// disk device; and a --format that contradicts the output's extension.
    #[arg(
        short = 'y',
        long,
        global = true,
        help_heading = "Common options",
        display_order = 103
    )]
    force: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Encode(encode::EncodeArgs),
    Decode(decode::DecodeArgs),
    Info(info::InfoArgs),
    Upscale(upscale::UpscaleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    report::set_level(match (cli.quiet, cli.verbose) {
        (true, _) => report::QUIET,
        (_, true) => report::VERBOSE,
        _ => report::NORMAL,
    });
    output::install_signal_handler();
    // More threads than cores only slow CPU-bound work down (2000 threads made a 20 ms decode
    // take seconds): the request is capped at the core count.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(n) = cli.threads {
        let n = (n as usize).min(cores);
        if n < cli.threads.unwrap_or(0) as usize {
            report::note(&format!("--threads capped at {n}, the number of cores"));
        }
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
        {
            eprintln!("gsimg: error: cannot start {n} threads: {e}");
            return ExitCode::from(1);
        }
    }
    let ctx = Context {
        limits: gsimg::Limits::default(),
        force: cli.force,
    };
    match run(cli.command, &ctx) {
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
            report::error(&error_line(&e));
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// An error as one line: the chain adds context layers (file names); a cause whose text its
/// parent already shows (thiserror's `#[from]` wrappers) is not repeated. The library's errors
/// are worded with the options that fix them.
fn error_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain().map(|c| match c.downcast_ref::<gsimg::Error>() {
        Some(g) => describe(g),
        None => c.to_string(),
    }) {
        if !msg.contains(&cause) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&cause);
        }
    }
    msg
}

fn run(command: Command, ctx: &Context) -> Result<()> {
    match command {
        Command::Encode(a) => encode::run(a, ctx),
        Command::Decode(a) => decode::run(a, ctx),
        Command::Info(a) => info::run(a, &ctx.limits),
        Command::Upscale(a) => upscale::run(a, ctx),
    }
}
