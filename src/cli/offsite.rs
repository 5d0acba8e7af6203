//! `pgmirror offsite push`, and the off-site part of `backup` and `verify`.

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use pgmirror::config::BackupConfig;
use pgmirror::offsite::OffsiteConfig;

use super::print_stdout;

/// Off-site copies of the backup set (the config file's [[offsite]] targets).
#[derive(Debug, Args)]
pub struct OffsiteArgs {
    #[command(subcommand)]
    command: OffsiteCommand,
}

#[derive(Debug, Subcommand)]
enum OffsiteCommand {
    /// Copy every backup a target lacks (after an outage), each object checked against
    /// the manifest, the manifest last.
    Push(super::backupset::SetArgs),
}

pub fn run(args: OffsiteArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        OffsiteCommand::Push(set) => {
            let (dir, config) = set.resolve()?;
            if config.offsite.is_empty() {
                anyhow::bail!("the config file has no [[offsite]] targets");
            }
            own_targets(&dir, &config)?;
            Ok(push(&dir, &config, false))
        }
    }
}

/// The config's off-site targets when `dir` is its set, else none (said unless `quiet`).
pub fn targets_for<'a>(dir: &Path, config: &'a BackupConfig, quiet: bool) -> &'a [OffsiteConfig] {
    let targets = config.offsite_for(dir);
    if targets.is_empty() && !config.offsite.is_empty() && !quiet {
        eprintln!("pgmirror: note: {}", not_this_set(dir, config));
    }
    targets
}

/// The config's off-site targets for `dir`, an error when they belong to another set.
fn own_targets<'a>(dir: &Path, config: &'a BackupConfig) -> anyhow::Result<&'a [OffsiteConfig]> {
    let targets = config.offsite_for(dir);
    if targets.is_empty() && !config.offsite.is_empty() {
        anyhow::bail!("{}", not_this_set(dir, config));
    }
    Ok(targets)
}

fn not_this_set(dir: &Path, config: &BackupConfig) -> String {
    match config.dir.as_deref() {
        Some(own) => format!(
            "the [[offsite]] targets belong to the set in {}, not to {}: left out",
            own.display(),
            dir.display()
        ),
        None => format!(
            "the [[offsite]] targets belong to the set the config file's `dir` names, and it names none: left out for {}",
            dir.display()
        ),
    }
}

/// Pushes to every target of `dir`'s set, printing what happened; exit 1 when a target failed.
pub fn push(dir: &Path, config: &BackupConfig, quiet: bool) -> ExitCode {
    match pgmirror::offsite::push(dir, targets_for(dir, config, quiet)) {
        Ok(reports) => {
            let mut failed = false;
            for report in &reports {
                match &report.error {
                    None if !quiet => {
                        let _ = print_stdout(&format!(
                            "offsite {}: {} copied, {} already there",
                            report.target,
                            report.copied.len(),
                            report.already_there
                        ));
                    }
                    None => {}
                    Some(error) => {
                        failed = true;
                        eprintln!(
                            "warning: offsite {}: copy failed ({} copied before): {error}; `pgmirror offsite push` completes it",
                            report.target,
                            report.copied.len()
                        );
                    }
                }
            }
            if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("warning: off-site copies not made: {error}");
            ExitCode::from(1)
        }
    }
}

/// `verify --offsite NAME`: every remote object against its manifest.
pub fn verify(dir: &Path, config: &BackupConfig, name: &str) -> anyhow::Result<(Vec<String>, usize)> {
    let target = own_targets(dir, config)?
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| anyhow::anyhow!("no [[offsite]] target named {name:?} in the config file"))?;
    let problems = pgmirror::offsite::verify(dir, target)?;
    Ok((problems, pgmirror::backupset::list(dir)?.len()))
}
