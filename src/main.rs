//! Command-line entry point: wires the subcommands to the library.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Stores vault-provider credentials (1Password, Doppler, Infisical) from Kubernetes Secrets in
/// AWS SSM Parameter Store, driven by `VaultConnection` resources.
#[derive(Parser)]
#[command(name = "vault-connection-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the cluster in KUBECONFIG or the in-cluster config.
    Run,
    /// Print the VaultConnection CustomResourceDefinition as YAML.
    Crd,
    /// Check VaultConnection manifests (and their Secrets) offline, for CI and GitOps pipelines.
    Validate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = match cli.command {
        Command::Run => "run",
        Command::Crd => "crd",
        Command::Validate => "validate",
    };
    eprintln!("vault-connection-operator {name}: not implemented yet");
    ExitCode::FAILURE
}
